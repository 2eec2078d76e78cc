//! Host name resolution for the HTTP agent, once per host and run.
//!
//! ureq resolves the host before every request, even one that reuses a pooled connection,
//! and with a timeout set it spawns a thread for each lookup: three threads per provider per
//! round, most of a 50-provider round's thread starts. A run lasts minutes at most, so the
//! first answer is kept for the rest of it. Address literals are never looked up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

#[derive(Debug, Default)]
pub struct OnceResolver {
    lookup: DefaultResolver,
    /// `host:port` → the addresses the first lookup gave.
    known: Mutex<HashMap<String, Vec<SocketAddr>>>,
}

impl Resolver for OnceResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(key) = host_and_port(uri) else {
            // Let ureq report what is wrong with the URL.
            return self.lookup.resolve(uri, config, timeout);
        };
        if let Some(ip) = literal(&key.0) {
            return Ok(self.addresses(&[SocketAddr::new(ip, key.1)]));
        }
        let key = format!("{}:{}", key.0, key.1);
        if let Some(known) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(self.addresses(known));
        }
        let found = self.lookup.resolve(uri, config, timeout)?;
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found.to_vec());
        Ok(found)
    }
}

impl OnceResolver {
    fn addresses(&self, known: &[SocketAddr]) -> ResolvedSocketAddrs {
        let mut addresses = self.empty();
        for address in known {
            if addresses.try_push(*address).is_err() {
                break;
            }
        }
        addresses
    }
}

/// The URL's host and port (the scheme's default when none is written).
fn host_and_port(uri: &Uri) -> Option<(String, u16)> {
    let authority = uri.authority()?;
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        (None, _) => return None,
    };
    Some((authority.host().to_string(), port))
}

/// An address written in the URL (`127.0.0.1`, `[::1]`).
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time::Duration;

    fn resolve(resolver: &OnceResolver, url: &str) -> Vec<SocketAddr> {
        let timeout = NextTimeout {
            after: Duration::NotHappening,
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let uri: Uri = url.parse().expect("uri");
        resolver
            .resolve(&uri, &Config::default(), timeout)
            .expect("resolve")
            .to_vec()
    }

    #[test]
    fn literals_are_used_as_written_and_never_cached() {
        let resolver = OnceResolver::default();
        assert_eq!(
            resolve(&resolver, "http://127.0.0.1:5000/identity/v3"),
            ["127.0.0.1:5000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&resolver, "https://[::1]/v2.1"),
            ["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert!(resolver.known.lock().unwrap().is_empty());
    }

    #[test]
    fn a_host_name_is_looked_up_once_and_the_answer_reused() {
        let resolver = OnceResolver::default();
        let first = resolve(&resolver, "http://localhost:8774/v2.1/servers");
        assert!(!first.is_empty() && first.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(
            resolver.known.lock().unwrap().keys().collect::<Vec<_>>(),
            ["localhost:8774"]
        );
        // The cached answer is what a second call gets, whatever the path.
        resolver.known.lock().unwrap().insert(
            "localhost:8774".into(),
            vec!["127.0.0.9:8774".parse().unwrap()],
        );
        assert_eq!(
            resolve(&resolver, "http://localhost:8774/v2.1/flavors"),
            ["127.0.0.9:8774".parse::<SocketAddr>().unwrap()]
        );
    }
}
