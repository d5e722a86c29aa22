//! `plexus call`: call a method with params given on the command line, a file or stdin.

use std::time::Duration;

use clap::Args;
use plexus_proto::validate_name;

use crate::bus::{Global, parse_duration};
use crate::exit::{Failure, INVALID_ARGS, OK};
use crate::output::print_json_bytes;
use crate::params::{self, Bare};

/// `plexus call OBJECT METHOD [PARAMS...]` or `plexus call OBJECT.METHOD [PARAMS...]`.
#[derive(Args, Debug)]
#[command(after_help = CALL_HELP)]
pub struct CallArgs {
    /// `OBJECT METHOD` or `OBJECT.METHOD`, then the params.
    #[arg(
        required = true,
        allow_negative_numbers = true,
        value_name = "OBJECT[.METHOD]"
    )]
    words: Vec<String>,
    /// How long to wait for the answer (5s, 250ms, or seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Check the params against the object's contract (from `plexus introspect`) without
    /// calling: exit 0 if they match, 60 with the pointer and reason if not.
    #[arg(long)]
    check: bool,
}

const CALL_HELP: &str = "\
The method: `plexus call math add a:=1 b:=2` or `plexus call math.add a:=1 b:=2`. The first word
is OBJECT.METHOD (split at its last dot, as ProcBridge and JSON-RPC do) unless it has no dot, or
the second word is a plain word (letters, digits, _ - : only; not a number, true/false/null or a
one-letter signature): then the second word is the method. So `plexus call sensor.hub read` calls
`read` on `sensor.hub`, like `plexus call sensor.hub.read`.

Params (HTTPie style; values are never guessed):
  key=value          a string: version=1.10 zip=02134 are \"1.10\" and \"02134\"
  key:=json          JSON: n:=10 ok:=true tags:='[\"a\",\"b\"]'
  key=@file          the file's text as a string; key:=@file its JSON
  '{\"a\":1}'  42      one JSON value, as written (big integers stay exact)
  @params.json       one JSON value from a file
  -                  one JSON value from stdin
  s text  i 42  {ii} a 1 b 2  (ss) x y  n      an ipc-broker `rob` signature
No params sends none (the method sees null). The result is printed as JSON: pretty, or on one
line with --json.";

/// Whether `word` is a method name rather than params (see [`CALL_HELP`]).
fn is_method_word(word: &str) -> bool {
    !word.is_empty()
        && word != "-"
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c))
        && serde_json::from_str::<serde::de::IgnoredAny>(word).is_err()
        && !params::is_signature(word)
}

/// The object, the method, and the words that are params.
fn target(words: &[String]) -> Result<(String, String, &[String]), Failure> {
    let first = &words[0];
    let second_is_method = words.get(1).is_some_and(|w| is_method_word(w));
    let (object, method, rest) = if !first.contains('.') || second_is_method {
        let Some(method) = words.get(1) else {
            return Err(Failure::new(
                INVALID_ARGS,
                format!(
                    "which method of {first}? `plexus call {first} METHOD [PARAMS]` or \
                     `plexus call {first}.METHOD [PARAMS]` (`plexus introspect {first}` shows \
                     its methods)"
                ),
            ));
        };
        (first.clone(), method.clone(), &words[2..])
    } else {
        let (object, method) = first.rsplit_once('.').unwrap_or((first, ""));
        (object.to_owned(), method.to_owned(), &words[1..])
    };
    if let Err(e) = validate_name(&object) {
        return Err(Failure::new(
            INVALID_ARGS,
            format!("{object:?} is not an object name: {e}"),
        ));
    }
    if method.is_empty() {
        return Err(Failure::new(
            INVALID_ARGS,
            format!("{first:?} names no method after its last dot"),
        ));
    }
    Ok((object, method, rest))
}

/// Runs `plexus call`.
pub async fn call(args: CallArgs, g: Global) -> Result<u8, Failure> {
    let (object, method, rest) = target(&args.words)?;
    let params = params::parse(rest, Bare::Refused)?;
    let client = g.connect("call").await?;
    let body = params.as_ref().map_or(&b""[..], |p| p.get().as_bytes());
    if args.check {
        return crate::call_check::check(&client, &object, &method, body, &g).await;
    }
    let result = client
        .call_raw(&object, &method, body, args.timeout)
        .await
        .map_err(|e| Failure::of_call(e, &object, &method))?;
    print_json_bytes(&result, g.json);
    Ok(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(words: &[&str]) -> Option<(String, String, usize)> {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        target(&words).ok().map(|(o, m, rest)| (o, m, rest.len()))
    }

    #[test]
    fn both_forms_of_the_target() {
        let t = |o: &str, m: &str, n| Some((o.to_owned(), m.to_owned(), n));
        assert_eq!(split(&["echo", "hi", "a=1"]), t("echo", "hi", 1));
        assert_eq!(split(&["math.add", "a=1", "b=2"]), t("math", "add", 2));
        assert_eq!(split(&["math.add"]), t("math", "add", 0));
        assert_eq!(split(&["math.add", r#"{"a":1}"#]), t("math", "add", 1));
        assert_eq!(split(&["math.add", "i", "42"]), t("math", "add", 2));
        assert_eq!(split(&["math.add", "42"]), t("math", "add", 1));
        assert_eq!(split(&["math.add", "-"]), t("math", "add", 1));
        assert_eq!(split(&["math.add", "@p.json"]), t("math", "add", 1));
        assert_eq!(split(&["sensor.hub", "read"]), t("sensor.hub", "read", 0));
        assert_eq!(
            split(&["sensor.hub.read", "x=1"]),
            t("sensor.hub", "read", 1)
        );
        assert_eq!(split(&["echo"]), None);
        assert_eq!(split(&["math."]), None);
        assert_eq!(split(&["a b", "m"]), None);
    }
}
