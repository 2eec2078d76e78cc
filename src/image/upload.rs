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

/// A reader that hashes what passes through it and says how far it got every tenth.
pub struct Hashing<R, P: FnMut(u64, u64)> {
    inner: R,
    md5: Md5,
    sha512: Sha512,
    read: u64,
    total: u64,
    next_report: u64,
    progress: P,
}

impl<R: Read, P: FnMut(u64, u64)> Hashing<R, P> {
    /// `total`: the size expected, for the progress reports (`progress(read, total)`).
    pub fn new(inner: R, total: u64, progress: P) -> Self {
        Hashing {
            inner,
            md5: Md5::new(),
            sha512: Sha512::new(),
            read: 0,
            total,
            next_report: total / 10,
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
        if self.total > 0 && self.read >= self.next_report.max(1) {
            (self.progress)(self.read, self.total);
            self.next_report = self.read + self.total / 10;
        }
        Ok(n)
    }
}

/// What an upload sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub bytes: u64,
    pub md5: String,
    pub sha512: String,
}

/// Stream `file` into the (queued) image `image_id`, hashing it; then wait until Glance says
/// the image is active, at most until `until`, and compare its checksums with what was sent.
/// An error says which step failed; the caller deletes the image.
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
        .upload_image(image_id, &mut reader)
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

    use super::Hashing;

    #[test]
    fn hashing_reports_every_tenth_and_the_digests_of_what_passed() {
        let data = vec![b'a'; 1000];
        let mut reports = Vec::new();
        let mut reader = Hashing::new(&data[..], 1000, |read, total| reports.push((read, total)));
        let mut buf = [0u8; 50];
        while reader.read(&mut buf).unwrap() > 0 {}
        let (bytes, md5, sha512) = reader.finish();
        assert_eq!(bytes, 1000);
        assert_eq!(md5, "cabe45dcc9ae5b66ba86600cca6b8ba8");
        assert_eq!(sha512.len(), 128);
        assert_eq!(reports.len(), 10, "{reports:?}");
        assert_eq!(reports.last(), Some(&(1000, 1000)));
    }
}
