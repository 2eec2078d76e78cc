//! The command surface: every command exists with its `--help`, global options work, and
//! the commands of later releases refuse honestly (exit 1) without touching anything.

use std::process::Command;

use crate::support::{status, stderr, stdout, Install, BIN};

/// (command, words its --help must contain): the 2015 names and positional arguments.
const COMMANDS: &[(&str, &[&str])] = &[
    ("list", &["List nodes"]),
    ("image-list", &["List images in the providers"]),
    ("dib-image-list", &["disk images built locally"]),
    ("image-build", &["<IMAGE>", "--wait-lock"]),
    ("image-upload", &["[PROVIDER] IMAGE", "all"]),
    ("image-update", &["[PROVIDER]", "[IMAGE]", "--missing"]),
    ("image-delete", &["<ID>"]),
    ("dib-image-delete", &["<ID>"]),
    ("hold", &["<ID>", "hold"]),
    ("delete", &["<ID>", "--now"]),
    ("alien-list", &["[PROVIDER]"]),
    ("alien-image-list", &["[PROVIDER]"]),
    ("config-validate", &["Validate the configuration"]),
    (
        "reconcile",
        &["--dry-run", "--provider", "--duration", "--wait-lock"],
    ),
    ("cleanup", &["--wait-lock"]),
    ("check", &["SSH", "--wait-lock"]),
    ("acquire", &["<LABEL>", "--count", "--owner", "--wait"]),
    ("release", &["<ID>"]),
    ("status", &["min-ready"]),
    ("history", &["--limit", "--since"]),
    ("timers", &["--output"]),
    ("completions", &["<SHELL>"]),
];

fn help(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().expect("run");
    (status(&out), stdout(&out))
}

#[test]
fn every_command_has_help_with_its_arguments() {
    for (command, words) in COMMANDS {
        let (code, text) = help(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        for word in *words {
            assert!(
                text.contains(word),
                "`{command} --help` lacks {word:?}:\n{text}"
            );
        }
        // Global options are accepted after the subcommand too.
        assert!(
            text.contains("--config <CONFIG>") && text.contains("--format"),
            "{command}: {text}"
        );
    }
}

#[test]
fn top_level_help_lists_every_command_and_the_exit_codes() {
    let (code, text) = help(&["--help"]);
    assert_eq!(code, 0);
    for (command, _) in COMMANDS {
        assert!(
            text.contains(&format!("  {command} ")),
            "--help lacks {command}:\n{text}"
        );
    }
    for exit in [
        "  0   the command did its job",
        "  1   the command could not do its job",
        "  2   usage error",
        "  75  another run holds the lock",
        "  78  the configuration is invalid",
    ] {
        assert!(text.contains(exit), "--help lacks exit code {exit:?}");
    }
    assert!(
        text.contains("[env: NODEPOOL_CONFIG=]") && text.contains("/etc/nodepool/nodepool.yaml")
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["hold"],
        &["hold", "abc"],
        &["list", "--format", "xml"],
        &["acquire", "x", "--count", "0"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(status(&out), 2, "{args:?}: {}", stderr(&out));
    }
    // No guessing from a prefix: `del` is not `delete`.
    let out = Command::new(BIN).args(["del", "1"]).output().unwrap();
    assert_eq!(status(&out), 2);
}

#[test]
fn config_comes_from_nodepool_config_when_no_flag_is_given() {
    let install = Install::new();
    let out = Command::new(BIN)
        .args(["config-validate", "--file-only"])
        .env("NODEPOOL_CONFIG", &install.config)
        .output()
        .unwrap();
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("configuration valid: 2 labels, 2 providers"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_default_config_path_is_etc_nodepool() {
    // Only meaningful where /etc/nodepool/nodepool.yaml does not exist (test machines).
    if std::path::Path::new("/etc/nodepool/nodepool.yaml").exists() {
        return;
    }
    let out = Command::new(BIN)
        .arg("list")
        .env_remove("NODEPOOL_CONFIG")
        .output()
        .unwrap();
    assert_eq!(status(&out), 78);
    assert!(
        stderr(&out).contains("/etc/nodepool/nodepool.yaml: no such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_readme_lists_the_exit_codes_of_the_catalogue() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (exit, meaning) in nodepool::exit::Exit::CATALOGUE {
        let row = format!("| {} | {meaning}", exit.code());
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    }
}

#[test]
fn version_names_the_commit_when_built_from_git() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(status(&out), 0);
    let text = stdout(&out);
    let version = concat!("nodepool ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(version), "{text}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(head) = head {
        let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(
            text.contains(&format!("({commit}")),
            "{text} lacks {commit}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_command() {
    for (shell, marker) in [
        ("bash", "complete -F _nodepool"),
        ("zsh", "#compdef nodepool"),
        ("fish", "complete -c nodepool"),
    ] {
        // No configuration is needed to print them.
        let out = Command::new(BIN)
            .args(["-c", "/nonexistent.yaml", "completions", shell])
            .output()
            .unwrap();
        assert_eq!(status(&out), 0, "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}");
        for (command, _) in COMMANDS {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(status(&out), 2);
}

/// `man/nodepool.1` is `nodepool::manual::page()`; `NODEPOOL_WRITE_MAN=1` rewrites it.
#[test]
fn the_man_page_is_generated_from_the_command_line_and_renders_cleanly() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/man/nodepool.1");
    let page = nodepool::manual::page();
    if std::env::var_os("NODEPOOL_WRITE_MAN").is_some() {
        std::fs::write(path, &page).unwrap();
    }
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        shipped == page,
        "man/nodepool.1 is not what the command line generates: run \
         `NODEPOOL_WRITE_MAN=1 cargo nextest run -E 'test(/the_man_page/)'`"
    );
    for (command, words) in COMMANDS {
        assert!(
            page.contains(&format!("nodepool {command}")),
            "the page lacks {command}"
        );
        let _ = words;
    }
    for (exit, _) in nodepool::exit::Exit::CATALOGUE {
        assert!(page.contains(&format!(".B {}\n", exit.code())));
    }
    assert!(page.contains("JSON OUTPUT") && page.contains("known_hosts"));
    let plain = render_man(path);
    assert!(plain.contains("EXIT STATUS"), "{plain}");
    assert!(plain.contains("nodepool acquire"), "{plain}");
}

/// man/nodepool.yaml.5 names every key the configuration accepts (read from the serde types
/// that parse it, so a key added there fails here until it is documented) and renders
/// without warnings.
#[test]
fn the_configuration_man_page_documents_every_key() {
    let raw =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/raw.rs")).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/man/nodepool.yaml.5");
    let page = std::fs::read_to_string(path).unwrap();
    let mut keys = Vec::new();
    let mut in_raw = false;
    for line in raw.lines() {
        let line = line.trim();
        if line.starts_with("pub struct Raw") {
            in_raw = true;
        } else if line == "}" {
            in_raw = false;
        } else if let (true, Some(field)) = (in_raw, line.strip_prefix("pub ")) {
            if let Some((name, _)) = field.split_once(':') {
                keys.push(name.replace('_', "-"));
            }
        }
    }
    assert!(keys.len() > 80, "{keys:?}");
    for key in &keys {
        let roff = key.replace('-', "\\-");
        assert!(
            page.contains(&format!(".B {roff}\n")) || page.contains(&format!("\\fB{roff}\\fR")),
            "man/nodepool.yaml.5 does not document `{key}`"
        );
    }
    assert!(render_man(path).contains("PROVIDER IMAGES"));
}

/// `man -l PAGE` as plain text, insisting that groff warned about nothing at all.
fn render_man(path: &str) -> String {
    let out = Command::new("man")
        .args(["--warnings=all", "-l", path])
        .env("MANWIDTH", "80")
        .output()
        .expect("man (man-db)");
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).trim().is_empty(),
        "man -l {path} warns:\n{}",
        stderr(&out)
    );
    // Bold and underline come as overstrikes (c BACKSPACE c) when not on a terminal.
    let mut plain = String::new();
    for c in stdout(&out).chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}
