//! Shell completion: clap's scripts for the commands and flags, plus a wrapper per shell that
//! first asks the hidden `plexus __complete -- WORDS...` for names on the bus (the objects for
//! `call`, `introspect` and `wait`, the methods an object declared), and falls back to clap's
//! completion when it prints nothing.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use clap_complete::Shell;
use serde_json::{Value, json};

use crate::bus::Global;
use crate::exit::{Failure, OK};

/// `plexus __complete -- WORDS...`.
#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// The words after `plexus` up to the cursor; the last is the one being completed.
    #[arg(last = true)]
    words: Vec<String>,
}

/// How long completing may take before it gives up (printing nothing).
const PATIENCE: Duration = Duration::from_secs(2);

const BASH: &str = r#"
_plexus_bus() {
    local found
    mapfile -t found < <(plexus __complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
    if [[ ${#found[@]} -gt 0 ]]; then
        COMPREPLY=("${found[@]}")
        return 0
    fi
    _plexus "$@"
}
complete -F _plexus_bus -o bashdefault -o default plexus
"#;

const ZSH: &str = r#"
_plexus_bus() {
    local -a found
    found=(${(f)"$(plexus __complete -- "${(@)words[2,CURRENT]}" 2>/dev/null)"})
    if (( ${#found} )); then
        compadd -Q -- $found
    else
        _plexus "$@"
    fi
}
compdef _plexus_bus plexus
if [ "$funcstack[1]" = "_plexus" ]; then
    _plexus_bus "$@"
fi
"#;

const FISH: &str = r#"
function __plexus_bus_names
    set -l words (commandline -opc)
    set -e words[1]
    plexus __complete -- $words (commandline -ct) 2>/dev/null
end
complete -c plexus -f -n 'count (__plexus_bus_names) >/dev/null' -a '(__plexus_bus_names)'
"#;

/// Writes the completion script for `shell`.
pub fn script(shell: Shell, out: &mut dyn Write) {
    let mut generated = Vec::new();
    clap_complete::generate(shell, &mut crate::cli_command(), "plexus", &mut generated);
    let mut text = String::from_utf8_lossy(&generated).into_owned();
    let extra = match shell {
        Shell::Bash => BASH,
        Shell::Zsh => {
            // clap's own ending registers or runs `_plexus`; the wrapper does both instead.
            if let Some(at) = text.rfind("if [ \"$funcstack[1]\" = \"_plexus\" ]") {
                text.truncate(at);
            }
            ZSH
        }
        Shell::Fish => FISH,
        _ => "",
    };
    let _ = write!(out, "{text}{extra}");
}

/// What is being completed: the subcommand and which of its positional arguments.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    subcommand: String,
    /// The positional arguments before the word being completed.
    before: Vec<String>,
    /// `--bus ADDR` if the words give it.
    bus: Option<String>,
}

/// Reads `words` (the last being completed) the way clap would, as far as completing needs.
fn place(words: &[String]) -> Option<Place> {
    let command = crate::cli_command();
    let (_, before) = words.split_last()?;
    let mut bus = None;
    let mut sub: Option<clap::Command> = None;
    let mut positionals = Vec::new();
    let mut i = 0;
    while i < before.len() {
        let word = &before[i];
        i += 1;
        if word == "--" {
            positionals.extend(before[i..].iter().cloned());
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let takes_value = sub
                .as_ref()
                .unwrap_or(&command)
                .get_arguments()
                .chain(command.get_arguments())
                .find(|a| a.get_long() == Some(name))
                .is_some_and(|a| a.get_action().takes_values());
            let value = match (takes_value, inline) {
                (_, Some(v)) => Some(v),
                (true, None) => {
                    i += 1;
                    before.get(i - 1).cloned()
                }
                (false, None) => None,
            };
            if name == "bus" {
                bus = value;
            }
            continue;
        }
        if word.starts_with('-') && word.len() > 1 && word.parse::<f64>().is_err() {
            let takes_value = word.len() == 2
                && sub.as_ref().is_some_and(|s| {
                    s.get_arguments().any(|a| {
                        a.get_short().is_some_and(|c| word.ends_with(c))
                            && a.get_action().takes_values()
                    })
                });
            if takes_value {
                i += 1;
            }
            continue;
        }
        match &sub {
            None => sub = command.find_subcommand(word).cloned(),
            Some(_) => positionals.push(word.clone()),
        }
        sub.as_ref()?;
    }
    Some(Place {
        subcommand: sub?.get_name().to_owned(),
        before: positionals,
        bus,
    })
}

/// The names on the bus, with `plexus` itself.
async fn names(g: &Global) -> Vec<String> {
    let Ok(client) = g.connect("complete").await else {
        return Vec::new();
    };
    let list: Value = client
        .call("plexus", "list", &())
        .await
        .unwrap_or(Value::Null);
    let mut names: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    names.push("plexus".to_owned());
    names.sort();
    names.dedup();
    names
}

/// The methods `object` declared.
async fn methods(g: &Global, object: &str) -> Vec<String> {
    let Ok(client) = g.connect("complete").await else {
        return Vec::new();
    };
    let info: Value = client
        .call("plexus", "introspect", &json!({ "name": object }))
        .await
        .unwrap_or(Value::Null);
    info["description"]["methods"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The candidates for the last word.
async fn candidates(words: &[String], g: Global) -> Vec<String> {
    let Some(place) = place(words) else {
        return Vec::new();
    };
    let current = words.last().map_or("", String::as_str);
    let g = Global {
        bus: place.bus.clone().or(g.bus),
        json: false,
        token_file: g.token_file,
    };
    let found = match (place.subcommand.as_str(), place.before.as_slice()) {
        ("call", []) => match current.rsplit_once('.') {
            Some((object, _)) => {
                let mut found: Vec<String> = methods(&g, object)
                    .await
                    .into_iter()
                    .map(|m| format!("{object}.{m}"))
                    .collect();
                found.extend(names(&g).await);
                found
            }
            None => names(&g).await,
        },
        ("call", [object]) if !object.contains('.') => methods(&g, object).await,
        ("introspect", []) => names(&g).await,
        ("wait", _) => names(&g).await,
        _ => Vec::new(),
    };
    found
        .into_iter()
        .filter(|c| c.starts_with(current))
        .collect()
}

/// Prints the candidates for the last of the words, one per line (none when the broker cannot
/// be reached in time).
pub async fn complete(args: CompleteArgs, g: Global) -> Result<u8, Failure> {
    if let Ok(found) = tokio::time::timeout(PATIENCE, candidates(&args.words, g)).await {
        for candidate in found {
            println!("{candidate}");
        }
    }
    Ok(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(words: &[&str]) -> Option<(String, Vec<String>, Option<String>)> {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        place(&words).map(|p| (p.subcommand, p.before, p.bus))
    }

    #[test]
    fn the_place_being_completed() {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(at(&["call", ""]), Some(("call".into(), vec![], None)));
        assert_eq!(
            at(&["--bus", "unix:/x", "-v", "call", "math", "a"]),
            Some(("call".into(), owned(&["math"]), Some("unix:/x".into())))
        );
        assert_eq!(
            at(&["call", "--timeout", "5s", "math", ""]),
            Some(("call".into(), owned(&["math"]), None))
        );
        assert_eq!(
            at(&["--bus=tcp://h:1", "wait", "a", "b", ""]),
            Some(("wait".into(), owned(&["a", "b"]), Some("tcp://h:1".into())))
        );
        assert_eq!(at(&["ca"]), None);
        assert_eq!(at(&["nonsense", ""]), None);
    }
}
