//! Turns command-line arguments into JSON params, in these forms:
//!
//! - `key=value` pairs, HTTPie style: `=` is always a string, `:=` is JSON (`key=@file` is the
//!   file's text as a string, `key:=@file` the file's JSON);
//! - one JSON value (`'{"a":1}'`, `42`, `'"text"'`), `@file` (its JSON) or `-` (JSON on stdin);
//! - an ipc-broker `rob` signature (`{ii} a 10 b 32`, `(ss) one two`, `s text`, `i 42`, `n`).
//!
//! Values are kept as the JSON text given, so numbers come out exactly as they went in
//! (`1.10`, `02134` as a string, integers of any size).

use std::io::Read;

use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// Why arguments could not be turned into params.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(String);

fn fail<T>(msg: impl Into<String>) -> Result<T, ParamsError> {
    Err(ParamsError(msg.into()))
}

/// What one argument that is neither JSON, `key=value` nor a signature stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// Nothing: it is refused, with the forms that are accepted (`call`).
    Refused,
    /// A string (`publish TOPIC hello`).
    Text,
}

/// The forms, for error messages.
const FORMS: &str = "give key=value pairs (name=bob, n:=10 for JSON, x:='[1,2]'), one JSON value \
('{\"a\":1}', '\"text\"', 42), @FILE or - for JSON from a file or stdin, or a signature \
(s text, i 42, {ii} a 1 b 2, (ss) x y, n)";

/// The params `args` stand for; no arguments means no params (`None`).
pub fn parse(args: &[String], bare: Bare) -> Result<Option<Box<RawValue>>, ParamsError> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    if is_signature(first) {
        return signature(first, &args[1..], bare).map(Some);
    }
    if args.len() == 1 {
        return single(first, bare).map(Some);
    }
    if let Some(value) = as_json(first, "the argument")? {
        return fail(format!(
            "one JSON value was given ({}); {:?} is left over — put everything in the one value, \
             or use key=value pairs",
            value.get(),
            args[1]
        ));
    }
    pairs(args).map(Some)
}

/// One argument: `-`, `@file`, JSON, one `key=value` pair, or (with [`Bare::Text`]) text.
fn single(arg: &str, bare: Bare) -> Result<Box<RawValue>, ParamsError> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ParamsError(format!("cannot read params from stdin: {e}")))?;
        if text.trim().is_empty() {
            return fail("stdin was empty; give one JSON value on it, or leave out the -");
        }
        return json(&text, "stdin");
    }
    if let Some(path) = arg.strip_prefix('@') {
        let text = read_file(path)?;
        return match bare {
            Bare::Refused => json(&text, &format!("file {path}")),
            Bare::Text => {
                Ok(json(&text, path).unwrap_or_else(|_| string(text.trim_end_matches('\n'))))
            }
        };
    }
    if let Some(value) = as_json(arg, "the argument")? {
        return Ok(value);
    }
    if arg.contains('=') {
        return pairs(&[arg.to_owned()]);
    }
    match bare {
        Bare::Text => Ok(string(arg)),
        Bare::Refused => fail(format!("cannot read {arg:?}: {FORMS}")),
    }
}

/// `arg` as JSON: `Some` when it is JSON, `None` when it is not meant as JSON, an error with the
/// position when it looks like JSON (starts with `{`, `[` or `"`) but is not.
fn as_json(arg: &str, what: &str) -> Result<Option<Box<RawValue>>, ParamsError> {
    if let Ok(value) = serde_json::from_str::<Box<RawValue>>(arg) {
        return Ok(Some(value));
    }
    if arg.trim_start().starts_with(['{', '[', '"']) {
        return json(arg, what).map(Some);
    }
    Ok(None)
}

/// `text` as JSON, or an error naming `what`, the parse error, and where it is.
pub fn json(text: &str, what: &str) -> Result<Box<RawValue>, ParamsError> {
    serde_json::from_str::<Box<RawValue>>(text).map_err(|e| {
        let full = e.to_string();
        let reason = full
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&full);
        let lines: Vec<&str> = text.lines().collect();
        // serde_json puts an error found at a line's end at column 0 of the next line.
        let (line, column) = match (e.line(), e.column()) {
            (line, 0) if line > 1 => (line - 1, lines.get(line - 2).map_or(1, |l| l.len())),
            (line, column) => (line, column.max(1)),
        };
        let mut msg = format!("{what} is not JSON: {reason} at line {line} column {column}");
        if let Some(shown) = line.checked_sub(1).and_then(|i| lines.get(i)) {
            let upto = shown.get(..column.min(shown.len())).unwrap_or(shown);
            let caret = " ".repeat(upto.chars().count().saturating_sub(1));
            msg.push_str(&format!("\n    {shown}\n    {caret}^"));
        }
        ParamsError(msg)
    })
}

fn read_file(path: &str) -> Result<String, ParamsError> {
    std::fs::read_to_string(path).map_err(|e| ParamsError(format!("cannot read @{path}: {e}")))
}

/// `text` as a JSON string.
pub fn string(text: &str) -> Box<RawValue> {
    to_raw(&Value::String(text.to_owned()))
}

/// JSON `null`.
pub fn null() -> Box<RawValue> {
    to_raw(&Value::Null)
}

fn to_raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value serializes")
}

/// `key=value` pairs as one JSON object, in the order given.
fn pairs(args: &[String]) -> Result<Box<RawValue>, ParamsError> {
    let mut keys: Vec<String> = Vec::new();
    let mut body = String::from("{");
    for arg in args {
        let (key, value) = key_value(arg)?;
        if keys.contains(&key) {
            return fail(format!(
                "{key:?} is given twice; give each key once (key:='[1,2]' for a list)"
            ));
        }
        if !keys.is_empty() {
            body.push(',');
        }
        body.push_str(&Value::String(key.clone()).to_string());
        body.push(':');
        body.push_str(value.get());
        keys.push(key);
    }
    body.push('}');
    RawValue::from_string(body).map_err(|e| ParamsError(format!("building the params: {e}")))
}

/// `key=text` (a string), `key:=json`, `key=@file` (its text), `key:=@file` (its JSON).
fn key_value(arg: &str) -> Result<(String, Box<RawValue>), ParamsError> {
    let json_at = arg.find(":=");
    let text_at = arg.find('=');
    let (key, value) = match (json_at, text_at) {
        (Some(j), Some(t)) if j + 1 == t => {
            let (key, raw) = (&arg[..j], &arg[j + 2..]);
            let value = match raw.strip_prefix('@') {
                Some(path) => json(&read_file(path)?, &format!("{key}:=@{path}"))?,
                None => json(raw, &format!("the value of {key}:= ({raw})"))?,
            };
            (key, value)
        }
        (_, Some(t)) => {
            let (key, text) = (&arg[..t], &arg[t + 1..]);
            let value = match text.strip_prefix('@') {
                Some(path) => string(&read_file(path)?),
                None => string(text),
            };
            (key, value)
        }
        _ => return fail(format!("cannot read {arg:?}: {FORMS}")),
    };
    if key.is_empty() {
        return fail(format!("{arg:?} has an empty key"));
    }
    Ok((key.to_owned(), value))
}

const SCALARS: &str = "sinbf";

/// Whether `arg` reads as a signature: one scalar letter, or braces/parentheses around letters.
pub fn is_signature(arg: &str) -> bool {
    if arg.len() == 1 {
        return SCALARS.contains(arg);
    }
    let starts = arg.starts_with('{') || arg.starts_with('(');
    starts
        && arg.len() > 2
        && arg
            .chars()
            .all(|c| SCALARS.contains(c) || "{}()".contains(c))
}

fn signature(sig_text: &str, args: &[String], bare: Bare) -> Result<Box<RawValue>, ParamsError> {
    let mut rest = args.iter().map(String::as_str);
    let sig: Vec<char> = sig_text.chars().collect();
    let mut pos = 0;
    let value = signature_value(&sig, &mut pos, &mut rest).map_err(|e| {
        if bare == Bare::Text && args.is_empty() {
            ParamsError(format!(
                "{e} (to send the text {sig_text:?}, quote it as JSON: '\"{sig_text}\"')"
            ))
        } else {
            e
        }
    })?;
    if pos != sig.len() {
        return fail(format!(
            "signature {sig_text:?}: unexpected {:?} at position {pos}",
            sig[pos]
        ));
    }
    if let Some(extra) = rest.next() {
        return fail(format!(
            "signature {sig_text:?} is complete, but {extra:?} is left over"
        ));
    }
    Ok(to_raw(&value))
}

fn signature_value<'a>(
    sig: &[char],
    pos: &mut usize,
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<Value, ParamsError> {
    let Some(&c) = sig.get(*pos) else {
        return fail("the signature ended early");
    };
    *pos += 1;
    match c {
        '{' => {
            let mut map = Map::new();
            while sig.get(*pos) != Some(&'}') {
                let key = args.next().ok_or_else(|| {
                    ParamsError("a map in the signature needs a key argument".into())
                })?;
                let value = signature_value(sig, pos, args)?;
                map.insert(key.to_owned(), value);
            }
            *pos += 1;
            Ok(Value::Object(map))
        }
        '(' => {
            let mut list = Vec::new();
            while sig.get(*pos) != Some(&')') {
                list.push(signature_value(sig, pos, args)?);
            }
            *pos += 1;
            Ok(Value::Array(list))
        }
        'n' => Ok(Value::Null),
        letter => {
            let arg = args.next().ok_or_else(|| {
                ParamsError(format!("signature letter '{letter}' has no argument"))
            })?;
            scalar(letter, arg)
        }
    }
}

fn scalar(letter: char, arg: &str) -> Result<Value, ParamsError> {
    match letter {
        's' => Ok(Value::String(arg.to_owned())),
        'i' => arg
            .parse::<i64>()
            .map(|i| Value::Number(i.into()))
            .or_else(|_| fail(format!("'i' needs an integer, got {arg:?}"))),
        'f' => match arg.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => fail(format!("'f' needs a number, got {arg:?}")),
        },
        'b' => match arg {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => fail(format!("'b' needs true or false, got {arg:?}")),
        },
        other => fail(format!(
            "unknown signature letter '{other}' (use s i f b n {{}} ())"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(args: &[&str], bare: Bare) -> Result<Option<String>, ParamsError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, bare).map(|v| v.map(|r| r.get().to_owned()))
    }

    fn p(args: &[&str]) -> Result<Option<Value>, ParamsError> {
        raw(args, Bare::Refused)
            .map(|v| v.map(|text| serde_json::from_str(&text).expect("params are JSON")))
    }

    #[test]
    fn json_form() {
        assert_eq!(p(&[]), Ok(None));
        assert_eq!(p(&[r#"{"a":10,"b":32}"#]), Ok(Some(json!({"a":10,"b":32}))));
        assert_eq!(p(&["[1,2]"]), Ok(Some(json!([1, 2]))));
        assert_eq!(p(&["42"]), Ok(Some(json!(42))));
        assert_eq!(p(&[r#""text""#]), Ok(Some(json!("text"))));
        assert!(p(&["42", "43"]).is_err());
        assert!(p(&["hello"]).is_err());
    }

    #[test]
    fn json_is_kept_as_given() {
        let big = r#"{"id":123456789012345678901234567890,"v":1.10}"#;
        assert_eq!(raw(&[big], Bare::Refused), Ok(Some(big.to_owned())));
        assert_eq!(
            raw(&["n:=123456789012345678901234567890"], Bare::Refused),
            Ok(Some(r#"{"n":123456789012345678901234567890}"#.to_owned()))
        );
    }

    #[test]
    fn malformed_json_says_where() {
        let err = p(&[r#"{"a":1,}"#]).expect_err("trailing comma");
        assert!(err.0.contains("line 1 column 8"), "{err}");
        assert!(err.0.ends_with("       ^"), "{err}");
        let err = p(&["x:=[1,2"]).expect_err("unclosed list");
        assert!(err.0.contains("x:=") && err.0.contains("column"), "{err}");
    }

    #[test]
    fn key_value_form_is_strings_and_json() {
        assert_eq!(p(&["a=10", "b=32"]), Ok(Some(json!({"a":"10","b":"32"}))));
        assert_eq!(
            p(&["version=1.10", "zip=02134", "ok=true", "none=null"]),
            Ok(Some(
                json!({"version":"1.10","zip":"02134","ok":"true","none":"null"})
            ))
        );
        assert_eq!(
            p(&["a:=10", "ok:=true", "x:=[1,2]", "o:={\"k\":1}"]),
            Ok(Some(json!({"a":10,"ok":true,"x":[1,2],"o":{"k":1}})))
        );
        assert_eq!(
            p(&["v=1.2.3", "e=", "eq=a=b", "url=http://x:1/?q=2"]),
            Ok(Some(
                json!({"v":"1.2.3","e":"","eq":"a=b","url":"http://x:1/?q=2"})
            ))
        );
        assert_eq!(p(&["one=1"]), Ok(Some(json!({"one":"1"}))));
        assert!(p(&["=1"]).is_err());
        assert!(p(&["a=1", "a=2"]).is_err());
        assert!(p(&["a=1", "loose"]).is_err());
    }

    #[test]
    fn bare_text_is_a_string_where_allowed() {
        assert_eq!(
            raw(&["hello"], Bare::Text),
            Ok(Some(r#""hello""#.to_owned()))
        );
        assert_eq!(
            raw(&["25.6°C"], Bare::Text),
            Ok(Some(r#""25.6°C""#.to_owned()))
        );
        assert_eq!(
            raw(&["02134"], Bare::Text),
            Ok(Some(r#""02134""#.to_owned()))
        );
        assert_eq!(raw(&["42"], Bare::Text), Ok(Some("42".to_owned())));
        assert!(raw(&["{oops"], Bare::Text).is_err());
        let err = raw(&["s"], Bare::Text).expect_err("incomplete signature");
        assert!(err.0.contains(r#"'"s"'"#), "{err}");
    }

    #[test]
    fn signature_form() {
        assert_eq!(
            p(&["{ii}", "a", "10", "b", "32"]),
            Ok(Some(json!({"a":10,"b":32})))
        );
        assert_eq!(
            p(&["{is}", "key", "123", "value", "text"]),
            Ok(Some(json!({"key":123,"value":"text"})))
        );
        assert_eq!(p(&["(ss)", "one", "two"]), Ok(Some(json!(["one", "two"]))));
        assert_eq!(p(&["(ii)", "1", "2"]), Ok(Some(json!([1, 2]))));
        assert_eq!(p(&["s", "25.6°C"]), Ok(Some(json!("25.6°C"))));
        assert_eq!(p(&["i", "42"]), Ok(Some(json!(42))));
        assert_eq!(p(&["n"]), Ok(Some(json!(null))));
        assert_eq!(
            p(&["{s(ii)}", "name", "x", "pts", "1", "2"]),
            Ok(Some(json!({"name":"x","pts":[1,2]})))
        );
        assert_eq!(p(&["(bf)", "true", "2.5"]), Ok(Some(json!([true, 2.5]))));
        let err = p(&["i", "ten"]).expect_err("not an int");
        assert!(err.0.contains("ten"), "{err}");
        assert!(p(&["(ii)", "1"]).is_err());
        assert!(p(&["s", "a", "b"]).is_err());
        assert!(p(&["{ii", "a", "1", "b", "2"]).is_err());
    }
}
