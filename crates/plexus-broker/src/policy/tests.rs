use super::*;

fn accounts_in(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let passwd = dir.join("passwd");
    let group = dir.join("group");
    std::fs::write(
        &passwd,
        "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/:/bin/sh\n",
    )
    .expect("write passwd");
    std::fs::write(&group, "root:x:0:\nplexus:x:990:alice\n").expect("write group");
    (passwd, group)
}

fn unix_peer(uid: u32, gid: u32, groups: Vec<u32>) -> PeerInfo {
    let mut peer = PeerInfo::from_tcp(([127, 0, 0, 1], 1).into());
    peer.transport = "unix";
    peer.addr = None;
    peer.uid = Some(uid);
    peer.gid = Some(gid);
    peer.groups = groups;
    peer
}

const POLICY: &str = r#"
[[allow]]
who = ["group:plexus"]
call = ["math.*", "secret.>"]
publish = ["sensor.>"]
subscribe = ["sensor.>"]
own = ["svc.alice.>"]

[[allow]]
who = ["user:bob"]
monitor = true
list_details = true
join = ["workers"]

[[deny]]
who = ["*"]
call = ["secret.*"]
subscribe = ["sensor.private.>"]

[[deny]]
who = ["anonymous"]
call = [">"]

[quotas]
names = 3
"#;

#[test]
fn rules_apply_by_user_group_and_deny_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (passwd, group) = accounts_in(dir.path());
    let accounts = Accounts {
        passwd: &passwd,
        group: &group,
    };
    let policy = Policy::parse(POLICY, "test", accounts).expect("valid policy");
    assert_eq!(policy.quotas.names, Some(3));
    let alice = Access::restricted(policy.compile(&unix_peer(1001, 1001, vec![990]), accounts));
    assert_eq!(alice.call("math", "add", false), Ok(()));
    let denied = alice.call("secret", "get", false).expect_err("deny wins");
    assert_eq!(
        denied.0,
        "call 'secret.get' denied by policy rule deny[0].call[0] \"secret.*\" for uid 1001 (alice)"
    );
    assert_eq!(alice.call("secret.deep", "get", false), Ok(()));
    assert_eq!(alice.name(Action::Own, "svc.alice.db"), Ok(()));
    let err = alice
        .name(Action::Join, "svc.alice.db")
        .expect_err("own is not join");
    assert!(err.0.contains("no policy rule grants it"), "{}", err.0);
    assert_eq!(alice.publish("sensor.temp"), Ok(()));
    assert!(alice.publish("other").is_err());
    assert_eq!(alice.subscribe("sensor.*"), Ok(()));
    let err = alice
        .subscribe("sensor.>")
        .expect_err("reaches the denied topics");
    assert!(err.0.contains("deny[0].subscribe[0]"), "{}", err.0);
    assert!(alice.subscribe(">").is_err(), "not covered by sensor.>");
    assert!(alice.monitor().is_err());
    assert!(!alice.list_details());
    assert_eq!(
        alice.call("plexus", "stats", true),
        Ok(()),
        "the broker object unless denied"
    );

    let bob = Access::restricted(policy.compile(&unix_peer(1002, 1002, vec![]), accounts));
    assert!(
        bob.call("math", "add", false).is_err(),
        "bob is not in the group"
    );
    assert_eq!(bob.monitor(), Ok(()));
    assert!(bob.list_details());
    assert_eq!(bob.name(Action::Join, "workers"), Ok(()));

    let anon_peer = PeerInfo::from_tcp(([10, 0, 0, 2], 5000).into());
    let anon = Access::restricted(policy.compile(&anon_peer, accounts));
    let err = anon.call("plexus", "list", true).expect_err("denied by >");
    assert!(
        err.0.contains("deny[1].call[0]") && err.0.contains("anonymous peer 10.0.0.2:5000"),
        "{}",
        err.0
    );
    assert!(policy.mentions_anonymous());
    assert!(!policy.grants_anonymous());

    let open = Access::unrestricted();
    assert_eq!(open.call("secret", "get", false), Ok(()));
    assert!(open.list_details() && open.monitor().is_ok());
}

#[test]
fn mistakes_in_a_policy_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (passwd, group) = accounts_in(dir.path());
    let accounts = Accounts {
        passwd: &passwd,
        group: &group,
    };
    let err = |text: &str| Policy::parse(text, "test", accounts).expect_err(text);
    assert!(err("[[allow]]\nwho = [\"user:carol\"]\n").contains("allow[0].who: no user \"carol\""));
    assert!(err("[[deny]]\nwho = [\"uid:x\"]\n").contains("deny[0].who"));
    assert!(err("[[allow]]\nwho = []\n").contains("`who` is empty"));
    assert!(err("[[allow]]\nwho = [\"*\"]\ncall = [\"a..b\"]\n").contains("allow[0].call[0]"));
    assert!(err("[[allow]]\nwho = [\"*\"]\nsend = [\"a\"]\n").contains("unknown field"));
    assert!(err("[quotas]\nnamez = 1\n").contains("unknown field"));
}
