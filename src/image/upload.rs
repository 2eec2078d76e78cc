//! Uploading a build to Glance: the file is read once, streamed to the cloud and hashed on the
//! way (MD5 and SHA-512), then the image is waited for until active and Glance's own
//! `checksum` and `os_hash_value` are compared with what was sent.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use sha2::Sha512;

use crate::cloud::Cloud;

/// A reader that hashes what passes through it and says how far it got on every read
/// (`progress(read, total)`): often enough for a bar; [`Tenths`] thins it for log lines.
pub struct Hashing<R, P: FnMut(u64, u64)> {
    inner: R,
    md5: Md5,
    sha512: Sha512,
    read: u64,
    total: u64,
    progress: P,
}

impl<R: Read, P: FnMut(u64, u64)> Hashing<R, P> {
    /// `total`: the size expected, passed on to `progress`.
    pub fn new(inner: R, total: u64, progress: P) -> Self {
        Hashing {
            inner,
            md5: Md5::new(),
            sha512: Sha512::new(),
            read: 0,
            total,
            progress,
        }
    }

    /// The bytes read, and their MD5 and SHA-512 in hex.
    pub fn finish(self) -> (u64, String, String) {
        (
            self.read,
            format!("{:x}", self.md5.finalize()),
            format!("{:x}", self.sha512.finalize()),
        )
    }
}

impl<R: Read, P: FnMut(u64, u64)> Read for Hashing<R, P> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        self.sha512.update(&buf[..n]);
        self.read += n as u64;
        if n > 0 {
            (self.progress)(self.read, self.total);
        }
        Ok(n)
    }
}

/// Says when a count has gone another tenth of its total since it last said so: the progress
/// lines an upload leaves in the journal.
#[derive(Debug, Default)]
pub struct Tenths {
    /// The count at which to say so next; None before the first count.
    next: Option<u64>,
}

impl Tenths {
    /// Whether `read` of `total` is a tenth past the last count this said yes to (or, the
    /// first time, past the first tenth).
    pub fn passed(&mut self, read: u64, total: u64) -> bool {
        let next = *self.next.get_or_insert(total / 10);
        let passed = total > 0 && read >= next.max(1);
        if passed {
            self.next = Some(read + total / 10);
        }
        passed
    }
}

/// What an upload sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub bytes: u64,
    pub md5: String,
    pub sha512: String,
}

/// Stream `file` into the (queued) image `image_id`, hashing it and calling `progress(read,
/// total)` on every read; then wait until Glance says the image is active, at most until
/// `until`, and compare its checksums with what was sent. An error says which step failed;
/// the caller deletes the image.
pub fn upload_and_verify(
    cloud: &dyn Cloud,
    image_id: &str,
    file: &Path,
    until: Instant,
    progress: impl FnMut(u64, u64),
) -> Result<Sent> {
    let opened = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let total = opened.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = Hashing::new(opened, total, progress);
    cloud
        .upload_image(image_id, &mut reader, total)
        .with_context(|| format!("uploading {} to image {image_id}", file.display()))?;
    let (bytes, md5, sha512) = reader.finish();
    let sent = Sent { bytes, md5, sha512 };
    loop {
        let image = cloud
            .get_image(image_id)?
            .with_context(|| format!("image {image_id} vanished after its upload"))?;
        match image.status.as_str() {
            "active" => {
                if image.md5.as_deref() != Some(sent.md5.as_str()) {
                    bail!(
                        "Glance's checksum of image {image_id} is {:?}, the file's MD5 is {}: \
                         the data was damaged on the way",
                        image.md5,
                        sent.md5
                    );
                }
                // Clouds older than Rocky have no os_hash_value; where there is one it counts.
                if image
                    .sha512
                    .as_ref()
                    .is_some_and(|hash| *hash != sent.sha512)
                {
                    bail!(
                        "Glance's SHA-512 of image {image_id} differs from the file's: the data \
                         was damaged on the way"
                    );
                }
                return Ok(sent);
            }
            "killed" | "deleted" | "pending_delete" => {
                bail!("Glance put image {image_id} in status {}", image.status)
            }
            status if Instant::now() >= until => {
                bail!("image {image_id} is still {status} at the run's end")
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::{Hashing, Tenths};

    #[test]
    fn hashing_reports_every_read_and_the_digests_of_what_passed() {
        let data = vec![b'a'; 1000];
        let mut reports = Vec::new();
        let mut reader = Hashing::new(&data[..], 1000, |read, total| reports.push((read, total)));
        let mut buf = [0u8; 50];
        while reader.read(&mut buf).unwrap() > 0 {}
        let (bytes, md5, sha512) = reader.finish();
        assert_eq!(bytes, 1000);
        assert_eq!(md5, "cabe45dcc9ae5b66ba86600cca6b8ba8");
        assert_eq!(sha512.len(), 128);
        let expected: Vec<_> = (1..=20).map(|i| (i * 50, 1000)).collect();
        assert_eq!(reports, expected, "one report a read, none at the end");
    }

    #[test]
    fn tenths_thin_an_uploads_reads_to_one_report_every_tenth() {
        let data = vec![b'a'; 1000];
        let mut tenths = Tenths::default();
        let mut reports = Vec::new();
        let mut reader = Hashing::new(&data[..], 1000, |read, total| {
            if tenths.passed(read, total) {
                reports.push((read, total));
            }
        });
        let mut buf = [0u8; 50];
        while reader.read(&mut buf).unwrap() > 0 {}
        assert_eq!(reports.len(), 10, "{reports:?}");
        assert_eq!(reports.first(), Some(&(100, 1000)));
        assert_eq!(reports.last(), Some(&(1000, 1000)));
        assert!(
            reports.windows(2).all(|w| w[1].0 >= w[0].0 + 100),
            "a tenth apart: {reports:?}"
        );
        assert!(
            !Tenths::default().passed(0, 0),
            "an empty file says nothing"
        );
    }
}
