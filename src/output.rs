//! The only writer of stdout: tables (one style) and JSON (one document). Logs and errors go
//! to stderr, so `nodepool list --format json | jq` always works.

use std::io::{self, BufWriter, Write};

use anyhow::Result;
use serde::Serialize;

/// Print rows as a table with the given headers; each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    write_out(|out| write_table(out, headers, rows))
}

/// Print one JSON document.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    write_out(|out| {
        serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
        writeln!(out)
    })
}

/// Print plain lines (confirmations of `hold`, `delete`, …).
pub fn line(text: &str) -> Result<()> {
    write_out(|out| writeln!(out, "{text}"))
}

fn write_out(
    write: impl FnOnce(&mut BufWriter<io::StdoutLock<'static>>) -> io::Result<()>,
) -> Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    match write(&mut out).and_then(|_| out.flush()) {
        // `nodepool list | head` closes the pipe early; that is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A `+---+` bordered table like the 2015 commands printed (prettytable), via tabled.
pub fn write_table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut builder = tabled::builder::Builder::with_capacity(rows.len() + 1, headers.len());
    builder.push_record(headers.iter().copied());
    for row in rows {
        builder.push_record(row.iter().map(String::as_str));
    }
    let mut table = builder.build();
    table.with(table_style());
    writeln!(out, "{table}")
}

/// Borders all round and a rule under the header only, as prettytable drew them in 2015.
fn table_style() -> impl tabled::settings::TableOption<
    tabled::grid::records::vec_records::VecRecords<
        tabled::grid::records::vec_records::Text<String>,
    >,
    tabled::grid::config::ColoredConfig,
    tabled::grid::dimension::CompleteDimension,
> {
    use tabled::settings::style::{HorizontalLine, Style};
    Style::ascii()
        .remove_horizontal()
        .horizontals([(1, HorizontalLine::full('-', '+', '+', '+'))])
}

/// An optional cell: empty when absent.
pub fn cell(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_fit_the_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["1".to_string(), "provider-one".to_string()],
            vec!["22".into(), "p".into()],
        ];
        write_table(&mut out, &["ID", "Provider"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "+----+--------------+\n\
             | ID | Provider     |\n\
             +----+--------------+\n\
             | 1  | provider-one |\n\
             | 22 | p            |\n\
             +----+--------------+\n"
        );
    }
}
