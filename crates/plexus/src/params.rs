//! Turns command-line arguments into JSON params, in three forms: one JSON value,
//! `key=value` pairs (httpie style, `key:=json` for raw JSON), or an ipc-broker `rob` signature
//! (`{ii} a 10 b 32`, `(ss) one two`, `s text`, `i 42`, `n`).

use serde_json::{Map, Number, Value};

/// Why arguments could not be turned into params.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(String);

fn fail<T>(msg: impl Into<String>) -> Result<T, ParamsError> {
    Err(ParamsError(msg.into()))
}

/// The params `args` stand for; no arguments means no params (`None`).
pub fn parse(args: &[String]) -> Result<Option<Value>, ParamsError> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    if is_signature(first) {
        let mut rest = args[1..].iter().map(String::as_str);
        let sig: Vec<char> = first.chars().collect();
        let mut pos = 0;
        let value = signature_value(&sig, &mut pos, &mut rest)?;
        if pos != sig.len() {
            return fail(format!(
                "signature {first:?}: unexpected {:?} at position {pos}",
                sig[pos]
            ));
        }
        if let Some(extra) = rest.next() {
            return fail(format!(
                "signature {first:?} is complete, but {extra:?} is left over"
            ));
        }
        return Ok(Some(value));
    }
    if let Ok(value) = serde_json::from_str::<Value>(first) {
        if args.len() > 1 {
            return fail(format!(
                "one JSON value was given ({first}); {:?} is left over",
                args[1]
            ));
        }
        return Ok(Some(value));
    }
    if args.iter().all(|a| a.contains('=')) {
        let mut map = Map::new();
        for arg in args {
            let (key, value) = key_value(arg)?;
            map.insert(key, value);
        }
        return Ok(Some(Value::Object(map)));
    }
    let bad = args.iter().find(|a| !a.contains('=')).unwrap_or(first);
    fail(format!(
        "cannot read {bad:?}: give one JSON value ('{{\"a\":1}}', '\"text\"'), key=value pairs (a=1 name=bob x:='[1,2]'), \
         or a signature (s text, i 42, {{ii}} a 1 b 2, (ss) x y, n)"
    ))
}

/// `key=value` (type inferred) or `key:=json` (raw JSON).
fn key_value(arg: &str) -> Result<(String, Value), ParamsError> {
    if let Some((key, json)) = arg.split_once(":=")
        && !key.contains('=')
    {
        let value = serde_json::from_str(json)
            .map_err(|e| ParamsError(format!("{arg:?}: the value after := is not JSON: {e}")))?;
        return Ok((nonempty_key(key, arg)?, value));
    }
    let (key, text) = arg
        .split_once('=')
        .ok_or_else(|| ParamsError(format!("{arg:?} is not key=value")))?;
    Ok((nonempty_key(key, arg)?, infer(text)))
}

fn nonempty_key(key: &str, arg: &str) -> Result<String, ParamsError> {
    if key.is_empty() {
        return fail(format!("{arg:?} has an empty key"));
    }
    Ok(key.to_owned())
}

/// `10` → number, `true`/`false` → bool, `null` → null, anything else → string.
fn infer(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                return Value::Number(i.into());
            }
            match text.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n)
                    if !text.is_empty()
                        && text
                            .chars()
                            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) =>
                {
                    Value::Number(n)
                }
                _ => Value::String(text.to_owned()),
            }
        }
    }
}

const SCALARS: &str = "sinbf";

/// Whether `arg` reads as a signature: one scalar letter, or braces/parentheses around letters.
fn is_signature(arg: &str) -> bool {
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

    fn p(args: &[&str]) -> Result<Option<Value>, ParamsError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
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
    fn key_value_form() {
        assert_eq!(p(&["a=10", "b=32"]), Ok(Some(json!({"a":10,"b":32}))));
        assert_eq!(
            p(&["name=bob", "ok=true", "none=null", "pi=3.5"]),
            Ok(Some(json!({"name":"bob","ok":true,"none":null,"pi":3.5})))
        );
        assert_eq!(
            p(&["x:=[1,2]", "o:={\"k\":1}"]),
            Ok(Some(json!({"x":[1,2],"o":{"k":1}})))
        );
        assert_eq!(
            p(&["v=1.2.3", "e=", "eq=a=b"]),
            Ok(Some(json!({"v":"1.2.3","e":"","eq":"a=b"})))
        );
        assert!(p(&["=1"]).is_err());
        assert!(p(&["x:=[1"]).is_err());
        assert!(p(&["a=1", "loose"]).is_err());
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
