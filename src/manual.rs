//! nodepool(1), generated from the same clap definitions as `--help` (clap_mangen) plus the
//! exit-status catalogue and the README's JSON section, so the page cannot drift from the
//! program: a test compares `man/nodepool.1` with `page()`.

use std::io::Write as _;

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;

/// The README, for its JSON output section (one text for both).
const README: &str = include_str!("../README.md");

/// The whole page, as roff.
pub fn page() -> String {
    let command = Cli::command();
    let man = Man::new(command.clone())
        .date("")
        .source(concat!("nodepool ", env!("CARGO_PKG_VERSION")))
        .manual("nodepool manual");
    let mut out: Vec<u8> = Vec::new();
    let rendered = man
        .render_title(&mut out)
        .and_then(|()| man.render_name_section(&mut out))
        .and_then(|()| man.render_synopsis_section(&mut out))
        .and_then(|()| man.render_description_section(&mut out))
        .and_then(|()| man.render_options_section(&mut out));
    // Writing into a Vec cannot fail.
    let _ = rendered;
    let _ = writeln!(out, ".SH COMMANDS");
    for sub in command.get_subcommands() {
        let name = format!("nodepool {}", sub.get_name());
        let sub_man = Man::new(sub.clone().bin_name(name.clone()));
        let mut part: Vec<u8> = Vec::new();
        let _ = sub_man
            .render_synopsis_section(&mut part)
            .and_then(|()| sub_man.render_description_section(&mut part))
            .and_then(|()| sub_man.render_options_section(&mut part));
        let text = String::from_utf8_lossy(&part);
        for line in text.lines() {
            // The command's sections become one subsection of COMMANDS.
            match line {
                ".SH SYNOPSIS" => {
                    let _ = writeln!(out, ".SS \"{name}\"");
                }
                ".SH DESCRIPTION" | ".SH OPTIONS" => {
                    let _ = writeln!(out, ".PP");
                }
                _ => {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }
    let _ = writeln!(out, ".SH \"EXIT STATUS\"");
    for (exit, meaning) in crate::exit::Exit::CATALOGUE {
        let _ = writeln!(out, ".TP\n.B {}\n{}", exit.code(), escape(meaning));
    }
    let _ = writeln!(out, ".SH \"JSON OUTPUT\"");
    for paragraph in json_section() {
        let _ = writeln!(out, ".PP\n{}", escape(&paragraph));
    }
    let _ = writeln!(
        out,
        ".SH ENVIRONMENT\n.TP\n.B NODEPOOL_CONFIG\nThe configuration file when \\fB\\-c\\fR is not \
         given (default /etc/nodepool/nodepool.yaml).\n.TP\n.B RUST_LOG\nLog filter, over \
         \\fB\\-\\-debug\\fR (for example \\fBnodepool=debug\\fR).\n.TP\n.B NODEPOOL_*\nEvery \
         variable of this kind is passed to ready and setup scripts on the nodes.\n\
         .SH FILES\n.TP\n.I /etc/nodepool/nodepool.yaml\nThe configuration (nodepool.yaml(5)).\n\
         .TP\n.I /var/lib/nodepool/nodepool.db\nThe state (SQLite), with its run and build locks \
         beside it.\n.SH \"SEE ALSO\"\nnodepool.yaml(5), systemd.timer(5), ssh(1), \
         disk\\-image\\-create(1)"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The README's "JSON output" section, as plain paragraphs (markdown marks dropped).
fn json_section() -> Vec<String> {
    let start = README
        .find("### JSON output")
        .map(|i| i + "### JSON output".len());
    let Some(start) = start else {
        return Vec::new();
    };
    let rest = &README[start..];
    let end = rest.find("\n### ").unwrap_or(rest.len());
    rest[..end]
        .split("\n\n")
        .map(|p| {
            p.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .replace('`', "")
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Text safe in a roff line: backslashes doubled, a leading dot or quote guarded, dashes
/// written as the minus sign they are in commands and options.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\\\").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}
