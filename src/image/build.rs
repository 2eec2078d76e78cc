//! Building a diskimage with diskimage-builder (or the `dib-cmd` that stands in for it), as
//! 2015 Nodepool did: `disk-image-create -x --no-tmpfs [--qemu-img-options O] [-t TYPES]
//! -o <images-dir>/<name>-<version> ELEMENTS`, with `DIB_RELEASE`, `DIB_IMAGE_NAME`,
//! `DIB_IMAGE_FILENAME`, `ELEMENTS_PATH`, `NODEPOOL_SCRIPTDIR` and the diskimage's `env-vars`.
//!
//! `command` is pure (what to run, and with which environment); `run` runs it in a process
//! group of its own, every line of its output into the build's log, and kills the whole group
//! when `build-timeout` passes or the run is interrupted.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::{Config, DiskImage};

/// What a build runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// The output's base path (`<images-dir>/<name>-<version>`): diskimage-builder writes
/// `<base>.<type>` for each image type.
pub fn output_base(images_dir: &Path, image: &DiskImage, version: i64) -> PathBuf {
    images_dir.join(format!("{}-{version}", image.name))
}

/// The file of one image type of a build (`<base>.qcow2`).
pub fn output_file(base: &Path, image_type: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(image_type);
    PathBuf::from(name)
}

/// The image types the providers that use `image` want (`image-type`, default qcow2), sorted.
pub fn image_types(config: &Config, image: &DiskImage) -> Vec<String> {
    let mut types: Vec<String> = config
        .providers
        .values()
        .filter(|p| {
            p.images.values().any(|i| {
                matches!(&i.source, crate::config::ImageSource::DiskImage { diskimage }
                    if *diskimage == image.name)
            })
        })
        .map(|p| p.image_type.clone().unwrap_or_else(|| "qcow2".into()))
        .collect();
    if types.is_empty() {
        types.push("qcow2".into());
    }
    types.sort();
    types.dedup();
    types
}

/// Pure: the command line and environment of a build of `image` into `base`.
pub fn command(config: &Config, image: &DiskImage, base: &Path, types: &[String]) -> BuildCommand {
    let mut args: Vec<String> = image.dib_cmd[1..].to_vec();
    args.extend(["-x".to_string(), "--no-tmpfs".to_string()]);
    if let Some(options) = &image.qemu_img_options {
        args.extend(["--qemu-img-options".to_string(), options.clone()]);
    }
    // qcow2 is diskimage-builder's own default, so 2015's command line had no -t for it.
    if types != ["qcow2"] {
        args.extend(["-t".to_string(), types.join(",")]);
    }
    args.extend(["-o".to_string(), base.display().to_string()]);
    args.extend(image.elements.iter().cloned());
    let mut env = BTreeMap::new();
    if let Some(release) = &image.release {
        env.insert("DIB_RELEASE".to_string(), release.clone());
    }
    env.insert("DIB_IMAGE_NAME".to_string(), image.name.to_string());
    env.insert("DIB_IMAGE_FILENAME".to_string(), base.display().to_string());
    if let Some(dir) = &config.elements_dir {
        env.insert("ELEMENTS_PATH".to_string(), dir.display().to_string());
    }
    if let Some(dir) = &config.script_dir {
        env.insert("NODEPOOL_SCRIPTDIR".to_string(), dir.display().to_string());
    }
    for (key, value) in &image.env_vars {
        env.insert(key.clone(), value.clone());
    }
    BuildCommand {
        program: image.dib_cmd[0].clone(),
        args,
        env,
    }
}

/// How a build ended, when it did not succeed.
#[derive(Debug)]
pub enum Stopped {
    /// The builder exited with this status (or was killed by a signal: None).
    Failed(Option<i32>),
    TimedOut(Duration),
    Interrupted,
}

/// Run `build` with its output into `log`, in a process group of its own (`started` gets its
/// id, to record); the whole group is killed after `timeout` or when `interrupted()` says so.
pub fn run(
    build: &BuildCommand,
    log: &Path,
    timeout: Duration,
    interrupted: impl Fn() -> bool,
    started_as: impl FnOnce(u32) -> Result<()>,
) -> Result<Result<(), Stopped>> {
    let mut file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    {
        use std::io::Write;
        writeln!(
            file,
            "nodepool: running {} {}",
            build.program,
            build.args.join(" ")
        )?;
        for (key, value) in &build.env {
            writeln!(file, "nodepool: {key}={value}")?;
        }
    }
    let stderr = file.try_clone()?;
    let mut child = Command::new(&build.program)
        .args(&build.args)
        .envs(&build.env)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the builder `{}`", build.program))?;
    if let Err(error) = started_as(child.id()) {
        kill_group(&mut child);
        return Err(error);
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(if status.success() {
                Ok(())
            } else {
                Err(Stopped::Failed(status.code()))
            });
        }
        let stop = if interrupted() {
            Some(Stopped::Interrupted)
        } else if started.elapsed() >= timeout {
            Some(Stopped::TimedOut(timeout))
        } else {
            None
        };
        if let Some(stop) = stop {
            kill_group(&mut child);
            return Ok(Err(stop));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stop what is left of a builder a killed run started (process group `pgid`, of `program`):
/// its group is signalled unless `pgid` is now another program's (a reused pid).
pub fn stop_orphan(pgid: u32, program: &str) {
    let leader = std::fs::read(format!("/proc/{pgid}/cmdline")).ok();
    if let Some(cmdline) = leader {
        // The builder's own name is argv[0], or argv[1] for a script run by its interpreter
        // (as the kernel resolved it): a pid reused by another program is left alone.
        let name = |path: &[u8]| {
            Path::new(std::str::from_utf8(path).unwrap_or_default())
                .file_name()
                .map(|n| n.to_os_string())
        };
        let wanted = name(program.as_bytes());
        let ours = cmdline
            .split(|b| *b == 0)
            .take(2)
            .any(|arg| name(arg) == wanted);
        if wanted.is_none() || !ours {
            return;
        }
    }
    // With the leader gone no new group can take its id, so what answers is its children.
    let signal = |name: &str| {
        Command::new("kill")
            .args([name, "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !signal("-0") {
        return; // nothing left
    }
    log::warn!("stopping the builder a killed run left running (process group {pgid})");
    signal("-TERM");
    std::thread::sleep(Duration::from_secs(1));
    signal("-KILL");
}

/// TERM, then after a few seconds KILL, to every process of the builder's group: its
/// children (qemu-img, chroot scripts) as well as itself. The builder is reaped as soon as it
/// exits, so the group is gone once its other members are.
fn kill_group(child: &mut std::process::Child) {
    let pgid = child.id();
    let signal = |name: &str| {
        Command::new("kill")
            .args([&format!("-{name}"), "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !signal("TERM") {
        return; // the group is gone already
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        let _ = child.try_wait();
        if !signal("0") {
            let _ = child.wait();
            return;
        }
    }
    signal("KILL");
    let _ = child.wait();
}

/// Remove every file of a build (`<base>` and `<base>.*`): a failed build's partial output.
pub fn remove_outputs(base: &Path) -> Result<()> {
    let (Some(dir), Some(stem)) = (base.parent(), base.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == stem || name.starts_with(&format!("{stem}.")) {
            let path = entry.path();
            let removed = if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Keep the newest `keep` logs of `image` in `dir` (`<image>-<version>.log`), remove the rest.
pub fn prune_logs(dir: &Path, image: &str, keep: usize) -> Result<()> {
    let prefix = format!("{image}-");
    let mut logs: Vec<(i64, PathBuf)> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .strip_prefix(&prefix)?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((version, entry.path()))
        })
        .collect();
    logs.sort();
    let surplus = logs.len().saturating_sub(keep);
    for (_, path) in logs.into_iter().take(surplus) {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// The files a ready build should have: one per image type, each not empty.
pub fn check_outputs(base: &Path, types: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for image_type in types {
        let file = output_file(base, image_type);
        match fs::metadata(&file) {
            Ok(m) if m.is_file() && m.len() > 0 => files.push(file),
            Ok(_) => bail!("the builder left {} empty", file.display()),
            Err(_) => bail!("the builder did not write {}", file.display()),
        }
    }
    Ok(files)
}
