//! The operator's pinned contracts: a directory with one `NAME.json` per object name, read and
//! compiled when the broker starts.

use std::path::Path;

use plexus_proto::validate_name;
use serde_json::value::RawValue;

use super::compile::{Compiled, compile};
use super::document::Document;

/// A pinned contract.
#[derive(Debug)]
pub struct Pinned {
    /// The object name it is pinned for.
    pub name: String,
    /// Its document.
    pub(super) doc: Document,
    /// Its compiled checks.
    pub(super) compiled: Compiled,
    /// Its text, as `plexus.introspect` shows it.
    pub(super) text: Box<RawValue>,
}

/// Reads every `NAME.json` in `dir` (other files are ignored): each at most `max_bytes`, nested
/// at most `max_depth` deep, declaring at least one schema; `$ref`s may point into other pinned
/// contracts. `Err` names the file and what is wrong with it.
pub fn load_pinned(dir: &Path, max_bytes: usize, max_depth: usize) -> Result<Vec<Pinned>, String> {
    let shown = dir.display();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read contracts_dir {shown}: {e}"))?;
    let mut read = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read contracts_dir {shown}: {e}"))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let name = name.to_owned();
        let file = path.display();
        validate_name(&name).map_err(|e| format!("pinned contract {file}: {e}"))?;
        let len = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read {file}: {e}"))?
            .len();
        if len > max_bytes as u64 {
            return Err(format!(
                "pinned contract {file} is {len} bytes, over the limit (max_description_bytes = {max_bytes})"
            ));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {file}: {e}"))?;
        let doc = Document::parse(&text, max_depth)
            .map_err(|e| format!("pinned contract {file}: {e}"))?
            .ok_or_else(|| format!("pinned contract {file} declares no schema"))?;
        let text = RawValue::from_string(text.trim().to_owned())
            .map_err(|e| format!("pinned contract {file}: {e}"))?;
        read.push((name, doc, text));
    }
    let compiled = read
        .iter()
        .map(|(name, doc, _)| {
            compile(name, doc, |other| {
                read.iter()
                    .find(|(n, _, _)| n == other)
                    .map(|(_, d, _)| &d.value)
            })
            .map_err(|e| format!("pinned contract {shown}/{name}.json: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(read
        .into_iter()
        .zip(compiled)
        .map(|((name, doc, text), compiled)| Pinned {
            name,
            doc,
            compiled,
            text,
        })
        .collect())
}
