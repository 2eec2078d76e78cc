//! Work over many providers in parallel, on a bounded number of threads: each thread costs a
//! stack, a malloc arena and a response body in flight, so 50 providers get 8 threads, not 50.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Threads used for per-provider work (connecting, listing).
pub const PROVIDER_THREADS: usize = 8;

/// `work` applied to every item, at most `threads` at a time; results in the items' order.
/// A panicking item yields `on_panic(item)`.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
    on_panic: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(index) else { return };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)))
                    .unwrap_or_else(|_| on_panic(item));
                if let Ok(mut results) = results.lock() {
                    results[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .zip(items)
        .map(|(result, item)| result.unwrap_or_else(|| on_panic(item)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_items_order_and_panics_become_values() {
        let items: Vec<u32> = (0..20).collect();
        let out = super::map(
            &items,
            3,
            |&n| {
                assert!(n != 7, "seven");
                n * 2
            },
            |&n| n + 1000,
        );
        assert_eq!(out[6], 12);
        assert_eq!(out[7], 1007);
        assert_eq!(out.len(), 20);
    }
}
