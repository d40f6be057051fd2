//! Maps a key path (`services[0].probes[1].timeout`) to its line and column in
//! the TOML or YAML text, so every error can say `FILE:LINE:COL`.
//!
//! Positions are 1-based and point at the offending *key* (`timeout` in
//! `timeout = "5x"`), at the element of an array (`"pager"` in
//! `notify = ["pager"]`), or at the header of an `[[array.of.tables]]`
//! element. A path that leads somewhere the text does not have (a default,
//! an inserted value) stops at the deepest part that does exist.

use std::collections::HashMap;
use std::fmt;
use toml_edit::{Array, ArrayOfTables, ImDocument, Item, TableLike, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a key path: a table/mapping key or an array/sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, e.g. `services[0].probes[1].timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        Self::default()
    }

    /// The last key of the path (`pager` in `notifiers.pager`).
    pub fn last_key(&self) -> Option<String> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k.clone()),
            _ => None,
        }
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// This path extended by every segment of `tail`.
    pub fn join(&self, tail: &KeyPath) -> Self {
        let mut p = self.clone();
        p.0.extend(tail.0.iter().cloned());
        p
    }

    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The path serde_path_to_error recorded for an error.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        KeyPath(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Enum { .. } | Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Byte offset → 1-based (line, column in characters).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, col + 1)
    }
}

/// 1-based (line, column) of a byte offset in `text`.
pub fn offset_to_position(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).position(offset)
}

/// Locates key paths in a parsed TOML document (parsed with spans kept).
pub struct TomlLocator<'a> {
    doc: &'a ImDocument<String>,
    lines: LineIndex<'a>,
}

/// Where the locator stands while walking a path.
enum Node<'a> {
    Table(&'a dyn TableLike),
    Tables(&'a ArrayOfTables),
    Array(&'a Array),
    Other,
}

impl<'a> Node<'a> {
    fn of_item(item: &'a Item) -> Self {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::Value(v) => Self::of_value(v),
            Item::None => Node::Other,
        }
    }

    fn of_value(v: &'a Value) -> Self {
        match v {
            Value::InlineTable(t) => Node::Table(t),
            Value::Array(a) => Node::Array(a),
            _ => Node::Other,
        }
    }
}

impl<'a> TomlLocator<'a> {
    pub fn new(doc: &'a ImDocument<String>) -> Self {
        Self {
            doc,
            lines: LineIndex::new(doc.raw()),
        }
    }

    /// Where `path` stands: its key, element or table header; the deepest
    /// existing ancestor if the path leaves the text; `None` at the root.
    pub fn locate(&self, path: &KeyPath) -> Option<(usize, usize)> {
        self.walk(path).0
    }

    /// Whether the whole of `path` is written in the text.
    pub fn contains(&self, path: &KeyPath) -> bool {
        self.walk(path).1
    }

    fn walk(&self, path: &KeyPath) -> (Option<(usize, usize)>, bool) {
        let mut node = Node::Table(self.doc.as_table());
        let mut found: Option<usize> = None;
        let mut complete = true;
        for seg in &path.0 {
            let step = match (seg, node) {
                (Seg::Key(k), Node::Table(t)) => t
                    .get_key_value(k)
                    .map(|(key, item)| (key.span().or_else(|| item.span()), Node::of_item(item))),
                (Seg::Index(i), Node::Tables(a)) => a.get(*i).map(|t| (t.span(), Node::Table(t))),
                (Seg::Index(i), Node::Array(a)) => a.get(*i).map(|v| (v.span(), Node::of_value(v))),
                _ => None,
            };
            let Some((span, next)) = step else {
                complete = false;
                break;
            };
            if let Some(s) = span {
                found = Some(s.start);
            }
            node = next;
        }
        (found.map(|o| self.lines.position(o)), complete)
    }
}

/// A path → position map of a YAML text, built from yaml-rust2's marked
/// events. Keys are located at the key scalar; sequence elements at their
/// first scalar (the first key of a mapping element).
#[derive(Debug, Default)]
pub struct YamlLocator {
    positions: HashMap<KeyPath, (usize, usize)>,
}

impl YamlLocator {
    /// Builds the map; a text yaml-rust2 cannot parse gives a partial map.
    pub fn new(text: &str) -> Self {
        let mut b = YamlBuilder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        Self {
            positions: b.positions,
        }
    }

    /// Where `path` stands, or its deepest located ancestor; `None` at the root.
    pub fn locate(&self, path: &KeyPath) -> Option<(usize, usize)> {
        let mut p = path.clone();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return Some(*pos);
            }
            p.0.pop()?;
        }
    }
}

enum Frame {
    Map {
        path: KeyPath,
        /// The key whose value comes next; `None` while expecting a key.
        key: Option<String>,
    },
    Seq {
        path: KeyPath,
        next: usize,
    },
}

#[derive(Default)]
struct YamlBuilder {
    stack: Vec<Frame>,
    positions: HashMap<KeyPath, (usize, usize)>,
    /// A sequence element that is a collection: located at its first scalar.
    pending_element: Option<KeyPath>,
}

impl YamlBuilder {
    fn pos(mark: &Marker) -> (usize, usize) {
        (mark.line(), mark.col() + 1)
    }

    /// Called when a node starts. Returns the path of the node, or `None`
    /// when the node is a mapping key (recorded here).
    fn begin_node(&mut self, ev: &Event, mark: &Marker) -> Option<KeyPath> {
        let is_scalar = matches!(ev, Event::Scalar(..) | Event::Alias(..));
        if is_scalar {
            if let Some(p) = self.pending_element.take() {
                self.positions.entry(p).or_insert(Self::pos(mark));
            }
        }
        match self.stack.last_mut() {
            None => Some(KeyPath::root()),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(path.key(&k)),
                None => {
                    let name = match ev {
                        Event::Scalar(s, ..) => s.clone(),
                        _ => "?".to_string(),
                    };
                    let p = path.key(&name);
                    self.positions.entry(p).or_insert(Self::pos(mark));
                    *key = Some(name);
                    if is_scalar {
                        None
                    } else {
                        // A complex key: walk it like a value, then expect its value.
                        Some(path.key("?"))
                    }
                }
            },
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                if is_scalar {
                    self.positions.entry(p.clone()).or_insert(Self::pos(mark));
                } else if self.pending_element.is_none() {
                    self.pending_element = Some(p.clone());
                }
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for YamlBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match &ev {
            Event::Scalar(..) | Event::Alias(..) => {
                self.begin_node(&ev, &mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.begin_node(&ev, &mark) {
                    self.stack.push(Frame::Map { path, key: None });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.begin_node(&ev, &mark) {
                    self.stack.push(Frame::Seq { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &[Seg]) -> KeyPath {
        KeyPath(s.to_vec())
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn toml_keys_elements_and_headers() {
        let text = "[server]\nlisten = \"x\"\n\n[[services]]\nname = \"a\"\nnotify = [\"p\", \"q\"]\n  [services.rollback]\n  command = []\n";
        let doc = ImDocument::parse(text.to_string()).unwrap();
        let l = TomlLocator::new(&doc);
        assert_eq!(l.locate(&path(&[k("server"), k("listen")])), Some((2, 1)));
        assert_eq!(
            l.locate(&path(&[k("services"), Seg::Index(0)])),
            Some((4, 1))
        );
        assert_eq!(
            l.locate(&path(&[
                k("services"),
                Seg::Index(0),
                k("notify"),
                Seg::Index(1)
            ])),
            Some((6, 16))
        );
        assert_eq!(
            l.locate(&path(&[
                k("services"),
                Seg::Index(0),
                k("rollback"),
                k("command")
            ])),
            Some((8, 3))
        );
        // Missing key: the deepest existing ancestor.
        assert_eq!(
            l.locate(&path(&[k("server"), k("shutdown_grace")])),
            Some((1, 2))
        );
        assert_eq!(l.locate(&KeyPath::root()), None);
    }

    #[test]
    fn yaml_keys_and_elements() {
        let text = "checks:\n  - name: x\n    foo: 1\n  - name: y\n    warning: { above: 1 }\n";
        let l = YamlLocator::new(text);
        assert_eq!(l.locate(&path(&[k("checks")])), Some((1, 1)));
        assert_eq!(l.locate(&path(&[k("checks"), Seg::Index(0)])), Some((2, 5)));
        assert_eq!(
            l.locate(&path(&[k("checks"), Seg::Index(0), k("foo")])),
            Some((3, 5))
        );
        assert_eq!(
            l.locate(&path(&[
                k("checks"),
                Seg::Index(1),
                k("warning"),
                k("above")
            ])),
            Some((5, 16))
        );
        assert_eq!(
            l.locate(&path(&[k("checks"), Seg::Index(1), k("nope")])),
            Some((4, 5))
        );
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(offset_to_position("é = 1\nab", 7), (2, 1));
        assert_eq!(offset_to_position("é = 1\nab", 4), (1, 4));
    }
}
