//! Errors that name the key and the reason, and, for a file, where it is.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// How much of a key or value an error message shows.
const MAX_SHOWN: usize = 64;
/// The longest reason an error gives (serde's messages quote values whole).
const MAX_REASON: usize = 512;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value lives in the document, e.g. `network[1].vni`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            // An unknown key may be megabytes long: name its start. One that
            // is not a bare TOML key (empty, or with a dot, a space, a quote)
            // is quoted, so that every key shows and `a."b.c"` is not `a.b.c`.
            let cut = |k: &str| {
                let start = match k.char_indices().nth(MAX_SHOWN) {
                    Some((at, _)) => format!("{}...", &k[..at]),
                    None => k.to_owned(),
                };
                let bare = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare { start } else { format!("{start:?}") }
            };
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{}", cut(k))?,
                Seg::Key(k) => write!(f, ".{}", cut(k))?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A value that broke a rule: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: KeyPath,
    pub reason: String,
}

impl FieldError {
    pub fn new(path: KeyPath, reason: impl Into<String>) -> Self {
        FieldError { path, reason: reason.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.0.is_empty() { f.write_str(&self.reason) } else { write!(f, "{}: {}", self.path, self.reason) }
    }
}

impl std::error::Error for FieldError {}

/// Every error found in one config file, each with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

/// One error in a config file: `host.toml:12:7: network[1].vni: 0 is out of range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: ", self.file.display(), e.line, e.column)?;
            if e.key.is_empty() {
                write!(f, "{}", e.reason)?;
            } else {
                write!(f, "{}: {}", e.key, e.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Turns key paths and byte offsets into line and column numbers.
pub(crate) struct Locator<'a> {
    pub text: &'a str,
    pub root: Option<&'a DeTable<'a>>,
}

impl Locator<'_> {
    pub fn at_span(&self, span: Option<Range<usize>>, key: String, mut reason: String) -> ConfigError {
        let (line, column) = self.line_col(span.map_or(0, |s| s.start));
        if let Some((at, _)) = reason.char_indices().nth(MAX_REASON) {
            let len = reason.len();
            reason.truncate(at);
            reason.push_str(&format!("... ({len} bytes in all)"));
        }
        ConfigError { line, column, key, reason }
    }

    pub fn at_path(&self, path: &KeyPath, reason: String) -> ConfigError {
        let span = self.span_of(path);
        self.at_span(span, path.to_string(), reason)
    }

    /// The span of the value at `path`, or of its nearest ancestor that exists
    /// (a missing key is reported at the table that lacks it).
    fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let root = self.root?;
        let mut best = None;
        let mut table = Some(root);
        let mut value: Option<&DeValue<'_>> = None;
        for seg in &path.0 {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v),
                (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            best = Some(next.span());
            value = Some(next.get_ref());
            table = match next.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}
