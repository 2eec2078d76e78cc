//! Reading a configuration file safely and turning it into a generic tree plus a map from key
//! paths to line numbers. YAML and TOML end up as the same tree (a `serde_yaml::Value`), so the
//! rest of `config/` never knows which syntax the operator wrote.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_yaml::Value;

/// Larger than any real configuration by two orders of magnitude; refusing bigger files keeps
/// a mistaken path (a disk image, a log) from being read into memory.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A parsed document and where each key path (`providers[0].images[1].min-ram`) starts.
pub struct Document {
    pub value: Value,
    pub lines: Lines,
}

/// Key path -> 1-based line of the key (or of the list item).
#[derive(Debug, Default, Clone)]
pub struct Lines(BTreeMap<String, usize>);

impl Lines {
    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.0.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// Why a file could not be turned into a document; `line` when the parser knows it.
#[derive(Debug)]
pub struct SourceError {
    pub line: Option<usize>,
    pub message: String,
}

impl SourceError {
    fn whole(message: impl Into<String>) -> Self {
        SourceError {
            line: None,
            message: message.into(),
        }
    }
}

pub fn read(path: &Path) -> Result<Document, SourceError> {
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(SourceError::whole(
            "the file is empty; expected sections such as labels, providers and targets",
        ));
    }
    if is_toml(path) {
        parse_toml(&text)
    } else {
        parse_yaml(&text)
    }
}

pub fn is_toml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"))
}

fn read_text(path: &Path) -> Result<String, SourceError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::whole(
            "no such file; name the configuration with -c CONFIG or NODEPOOL_CONFIG",
        ),
        _ => SourceError::whole(format!("cannot open: {e}")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| SourceError::whole(format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(SourceError::whole(
            "is a directory, not a configuration file",
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(SourceError::whole(format!(
            "the file is {} bytes; a configuration is at most {} bytes",
            meta.len(),
            MAX_CONFIG_BYTES
        )));
    }
    // `take` bounds the read even if the file grows (or is a FIFO) after the size check.
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SourceError::whole(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SourceError::whole(format!(
            "the file is larger than {MAX_CONFIG_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        SourceError {
            line: Some(line),
            message: format!(
                "not valid UTF-8 (byte {offset}); the configuration must be UTF-8 text"
            ),
        }
    })
}

fn parse_yaml(text: &str) -> Result<Document, SourceError> {
    // serde_yaml decides the scalar types and refuses alias bombs ("repetition limit
    // exceeded") and deep nesting ("recursion limit exceeded") on its own.
    let yaml_error = |e: serde_yaml::Error| SourceError {
        line: e.location().map(|l| l.line()),
        message: format!("invalid YAML: {}", strip_location(&e.to_string())),
    };
    let mut value: Value = serde_yaml::from_str(text).map_err(yaml_error)?;
    // PyYAML applied `<<: *defaults` merge keys, so 2015 files may use them.
    value.apply_merge().map_err(yaml_error)?;
    let mut locator = YamlLocator::default();
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    // Locations are a convenience: if the second parser disagrees, messages lose line numbers
    // but nothing else changes.
    let _ = parser.load(&mut locator, false);
    Ok(Document {
        value,
        lines: Lines(locator.lines),
    })
}

/// serde_yaml appends " at line L column C"; we print the line ourselves.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message.to_string(),
    }
}

fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn child_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct YamlLocator {
    stack: Vec<Frame>,
    lines: BTreeMap<String, usize>,
}

impl YamlLocator {
    /// Called when a node starts; returns its path, or None when the node is a mapping key.
    fn enter_node(&mut self, key_text: Option<&str>, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let child = child_index(path, *next);
                *next += 1;
                self.lines.insert(child.clone(), line);
                Some(child)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(child_key(path, &k)),
                None => {
                    // A key. Non-scalar keys are not part of our schema; name them "?".
                    let k = key_text.unwrap_or("?").to_string();
                    self.lines.insert(child_key(path, &k), line);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for YamlLocator {
    fn on_event(&mut self, event: yaml_rust2::Event, mark: yaml_rust2::scanner::Marker) {
        use yaml_rust2::Event;
        let line = mark.line();
        match event {
            Event::Scalar(text, ..) => {
                self.enter_node(Some(&text), line);
            }
            Event::Alias(_) => {
                self.enter_node(Some("*alias"), line);
            }
            Event::MappingStart(..) => {
                let path = self.enter_node(None, line).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_node(None, line).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

fn parse_toml(text: &str) -> Result<Document, SourceError> {
    let starts = LineStarts::new(text);
    let table = toml::de::DeTable::parse(text).map_err(|e| SourceError {
        line: e.span().map(|s| starts.line_of(s.start)),
        message: format!("invalid TOML: {}", e.message()),
    })?;
    let mut lines = BTreeMap::new();
    let value = toml_table(table.get_ref(), "", &starts, &mut lines);
    Ok(Document {
        value,
        lines: Lines(lines),
    })
}

fn toml_table(
    table: &toml::de::DeTable<'_>,
    path: &str,
    starts: &LineStarts,
    lines: &mut BTreeMap<String, usize>,
) -> Value {
    let mut map = serde_yaml::Mapping::new();
    for (key, value) in table {
        let child = child_key(path, key.get_ref());
        lines.insert(child.clone(), starts.line_of(key.span().start));
        let converted = toml_value(value.get_ref(), &child, starts, lines);
        map.insert(Value::String(key.get_ref().to_string()), converted);
    }
    Value::Mapping(map)
}

fn toml_value(
    value: &toml::de::DeValue<'_>,
    path: &str,
    starts: &LineStarts,
    lines: &mut BTreeMap<String, usize>,
) -> Value {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::String(i.as_str().to_string()),
        },
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::String(f.as_str().to_string()),
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Sequence(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let child = child_index(path, i);
                    lines.insert(child.clone(), starts.line_of(item.span().start));
                    toml_value(item.get_ref(), &child, starts, lines)
                })
                .collect(),
        ),
        DeValue::Table(table) => toml_table(table, path, starts, lines),
    }
}

/// Byte offset -> 1-based line.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|start| *start <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Document {
        parse_yaml(text).unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn yaml_keys_and_items_get_their_lines() {
        let doc = yaml("labels:\n  - name: a\n    min-ready: 2\n  - name: b\nproviders: []\n");
        assert_eq!(doc.lines.find("labels"), Some(1));
        assert_eq!(doc.lines.find("labels[0]"), Some(2));
        assert_eq!(doc.lines.find("labels[0].min-ready"), Some(3));
        assert_eq!(doc.lines.find("labels[1].name"), Some(4));
        assert_eq!(doc.lines.find("providers"), Some(5));
        // unknown paths fall back to the nearest ancestor
        assert_eq!(doc.lines.find("labels[1].image"), Some(4));
    }

    #[test]
    fn toml_keys_and_items_get_their_lines() {
        let text =
            "dburi = 'x.db'\n\n[[labels]]\nname = 'a'\nmin-ready = 2\n\n[[labels]]\nname = 'b'\n";
        let doc = parse_toml(text).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(doc.lines.find("dburi"), Some(1));
        assert_eq!(doc.lines.find("labels[0].min-ready"), Some(5));
        assert_eq!(doc.lines.find("labels[1].name"), Some(8));
        assert_eq!(doc.value["labels"][0]["min-ready"], Value::Number(2.into()));
    }

    #[test]
    fn yaml_syntax_errors_carry_a_line() {
        let err = parse_yaml("labels:\n  - name: a\n   bad: [\n")
            .err()
            .expect("must fail");
        assert!(err.line.is_some(), "{}", err.message);
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    }
}
