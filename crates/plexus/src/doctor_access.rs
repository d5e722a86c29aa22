//! `plexus doctor`'s access-control lines: who the broker thinks the caller is and what its
//! policy lets the caller do, from `plexus.whoami`.

use serde_json::Value;

/// The lines explaining `whoami` (the broker object's answer), one fact each.
pub fn explain(whoami: &Value) -> Vec<String> {
    let mut lines = vec![identity(whoami)];
    let Some(policy) = whoami.get("policy").filter(|p| !p.is_null()) else {
        lines.push(
            "the broker has no policy: every peer that can open its socket may do everything (the socket's mode decides who can)"
                .into(),
        );
        return lines;
    };
    let subject = policy["subject"].as_str().unwrap_or("you");
    lines.push(format!(
        "policy {} is in effect for {subject}; what no rule allows is denied, and deny rules win",
        policy["source"].as_str().unwrap_or("(unnamed)")
    ));
    let rights = &policy["rights"];
    for action in ["own", "join", "call", "publish", "subscribe"] {
        lines.push(format!(
            "{action}: allowed {}; denied {}",
            grants(&rights[action]["allow"]),
            grants(&rights[action]["deny"])
        ));
    }
    for (flag, what) in [
        ("monitor", "the monitor feed"),
        (
            "list_details",
            "list details (owners' pid, uid, executable)",
        ),
    ] {
        let f = &rights[flag];
        let state = match (f["deny"].as_str(), f["allow"].as_str()) {
            (Some(rule), _) => format!("denied by {rule}"),
            (None, Some(rule)) => format!("allowed by {rule}"),
            (None, None) => "not granted by any rule".into(),
        };
        lines.push(format!("{what}: {state}"));
    }
    let quotas: Vec<String> = policy["quotas"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_u64().map(|n| format!("{k} {n}")))
        .collect();
    lines.push(match quotas.is_empty() {
        true => "no per-user quotas".into(),
        false => format!(
            "quotas for {}: {}",
            policy["quota_owner"].as_str().unwrap_or("you"),
            quotas.join(", ")
        ),
    });
    lines
}

/// `you are uid 1001, gid 1001, groups [27], pid 4242 (pinned by a pidfd)`, or a TCP peer.
fn identity(w: &Value) -> String {
    match w["uid"].as_u64() {
        Some(uid) => format!(
            "the broker knows you as uid {uid}, gid {}, groups {}, pid {}{} (from the socket, fixed for the connection)",
            w["gid"],
            w["groups"],
            w["pid"],
            if w["pidfd"] == true {
                ", pinned by a pidfd"
            } else {
                ""
            }
        ),
        None => format!(
            "the broker knows you as a TCP peer {} {}",
            w["addr"].as_str().unwrap_or("(unknown address)"),
            if w["token"] == true {
                "that presented its token"
            } else {
                "without a token (anonymous)"
            }
        ),
    }
}

/// `"a.>" (allow[0].call[0]), ...` or `nothing`.
fn grants(list: &Value) -> String {
    let items: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            format!(
                "{} ({})",
                g["pattern"],
                g["rule"].as_str().unwrap_or_default()
            )
        })
        .collect();
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}
