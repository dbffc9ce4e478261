//! The Prometheus text exposition format (0.0.4): families with one HELP/TYPE header each,
//! escaped label values, exact integers. Knows nothing about pistats' metrics.

use std::collections::HashSet;
use std::fmt::Write as _;

/// A sample value: integers stay exact (counters can pass 2^53), floats use the shortest
/// round-trip form.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Float(f64),
    Int(u64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(u64::from(v))
    }
}

#[derive(Default)]
pub struct Exposition {
    pub out: String,
}

impl Exposition {
    pub fn gauge(&mut self, name: &'static str, help: &'static str) -> Family<'_> {
        self.family(name, help, "gauge")
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str) -> Family<'_> {
        debug_assert!(name.ends_with("_total"), "counter {name} lacks _total");
        self.family(name, help, "counter")
    }

    fn family(&mut self, name: &'static str, help: &'static str, kind: &'static str) -> Family<'_> {
        Family {
            out: &mut self.out,
            name,
            help,
            kind,
            seen: HashSet::new(),
        }
    }
}

/// One metric family. Borrowing the output exclusively makes its samples contiguous; the
/// HELP/TYPE header is written with the first sample, so a family whose values are all
/// null disappears entirely.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Rendered label sets, to never emit a duplicate series (which fails the whole scrape).
    seen: HashSet<String>,
}

impl Family<'_> {
    pub fn sample_opt<V: Into<Value>>(&mut self, labels: &[(&str, &str)], value: Option<V>) {
        if let Some(value) = value {
            self.sample(labels, value);
        }
    }

    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        let value = match value.into() {
            Value::Float(v) if !v.is_finite() => return,
            Value::Float(v) => v.to_string(),
            Value::Int(v) => v.to_string(),
        };
        let mut rendered = String::new();
        if !labels.is_empty() {
            rendered.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    rendered.push(',');
                }
                let _ = write!(rendered, "{name}=\"{}\"", escape_label_value(value));
            }
            rendered.push('}');
        }
        if self.seen.is_empty() {
            let _ = writeln!(self.out, "# HELP {} {}", self.name, escape_help(self.help));
            let _ = writeln!(self.out, "# TYPE {} {}", self.name, self.kind);
        }
        if !self.seen.insert(rendered.clone()) {
            return;
        }
        let _ = writeln!(self.out, "{}{rendered} {value}", self.name);
    }
}

pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}
