//! Who may listen where and who may connect: the listener rules checked before anything is bound,
//! and the decision at `hello` (the token, anonymous peers, the compiled rights).

use std::net::SocketAddr;

use super::token::TokenCheck;
use super::{Access, Accounts, Denied, Policy};
use crate::peer::PeerInfo;

/// The listeners a config asks for, as the rules see them.
#[derive(Debug, Clone, Copy)]
pub struct Listeners<'a> {
    /// Native TCP addresses (`--tcp`).
    pub native_tcp: &'a [SocketAddr],
    /// TCP addresses of dialects whose peers cannot present a token (ipc-broker, ipc-server).
    pub dialect_tcp: &'a [SocketAddr],
    /// `--allow-remote`.
    pub allow_remote: bool,
    /// Whether a token is configured.
    pub token: bool,
    /// Whether the Unix socket is shared beyond its owner (a group or a wider mode).
    pub shared_socket: bool,
}

/// Refuses listeners that would let peers in without the policy's say: a native TCP listener
/// beyond loopback without `allow_remote` and a token, a dialect TCP listener beyond loopback
/// unless the policy grants anonymous peers rights, a shared socket without a policy.
pub fn check_listeners(l: Listeners<'_>, policy: Option<&Policy>) -> Result<(), String> {
    if let Some(addr) = l.native_tcp.iter().find(|a| !a.ip().is_loopback())
        && !l.allow_remote
    {
        return Err(format!(
            "tcp {addr} is not a loopback address: anyone who can reach it could use the bus; pass --allow-remote (allow_remote = true) together with --token-file, or listen on 127.0.0.1"
        ));
    }
    if l.allow_remote && !l.token {
        return Err(
            "allow_remote needs a token (--token-file FILE, token_file = \"FILE\"): remote peers have no credentials the broker can check"
                .into(),
        );
    }
    if let Some(addr) = l.dialect_tcp.iter().find(|a| !a.ip().is_loopback())
        && !policy.is_some_and(Policy::grants_anonymous)
    {
        return Err(format!(
            "the dialect listener on {addr} is not on a loopback address, and its peers cannot present a token; give the policy an [[allow]] rule for who = [\"anonymous\"] naming what they may do, or listen on 127.0.0.1"
        ));
    }
    if l.shared_socket && policy.is_none() {
        return Err(
            "a shared socket (socket_mode other than 0600, or socket_group) needs a policy (--policy FILE): without one every user who can open the socket may do everything"
                .into(),
        );
    }
    Ok(())
}

/// Checks the token a peer sent in `hello` (empty: none): `Ok(true)` when it is the broker's,
/// `Ok(false)` when none was sent or the broker has none, `Err` when it is wrong.
pub fn check_token(token: Option<&TokenCheck>, presented: &[u8]) -> Result<bool, Denied> {
    match token {
        _ if presented.is_empty() => Ok(false),
        None => Ok(false),
        Some(check) if check.verify(presented) => Ok(true),
        Some(_) => Err(Denied(
            "the token in hello is not the broker's (--token-file); check PLEXUS_TOKEN or --token-file on the client".into(),
        )),
    }
}

/// The rights of a peer about to be attached, or why it is refused: an anonymous TCP peer of a
/// broker that has a token is refused unless the policy has rules for anonymous peers.
pub fn admit(
    policy: Option<&Policy>,
    token: Option<&TokenCheck>,
    peer: &PeerInfo,
) -> Result<Access, Denied> {
    let anonymous = peer.uid.is_none() && !peer.token;
    if anonymous && token.is_some() && !policy.is_some_and(Policy::mentions_anonymous) {
        return Err(Denied(format!(
            "this broker lets TCP peers in only with its token (--token-file), and {} sent none in hello (set PLEXUS_TOKEN or --token-file on the client)",
            peer.addr.as_deref().unwrap_or("this peer")
        )));
    }
    Ok(match policy {
        None => Access::unrestricted(),
        Some(policy) => Access::restricted(policy.compile(peer, Accounts::system())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners<'a>(native: &'a [SocketAddr], dialect: &'a [SocketAddr]) -> Listeners<'a> {
        Listeners {
            native_tcp: native,
            dialect_tcp: dialect,
            allow_remote: false,
            token: false,
            shared_socket: false,
        }
    }

    #[test]
    fn listeners_beyond_loopback_need_remote_token_or_anonymous_rights() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:5000".parse().expect("addr");
        let remote_addrs = [any];
        assert!(check_listeners(listeners(&[lo], &[lo]), None).is_ok());
        let err = check_listeners(listeners(&[any], &[]), None).expect_err("remote");
        assert!(err.contains("--allow-remote"), "{err}");
        let remote = Listeners {
            allow_remote: true,
            ..listeners(&remote_addrs, &[])
        };
        let err = check_listeners(remote, None).expect_err("no token");
        assert!(err.contains("--token-file"), "{err}");
        let with_token = Listeners {
            token: true,
            ..remote
        };
        assert!(check_listeners(with_token, None).is_ok());
        let err = check_listeners(listeners(&[], &[any]), None).expect_err("dialect");
        assert!(err.contains("anonymous"), "{err}");
        let accounts = Accounts::system();
        let grants = Policy::parse(
            "[[allow]]\nwho = [\"anonymous\"]\ncall = [\"math.*\"]\n",
            "t",
            accounts,
        )
        .expect("policy");
        assert!(check_listeners(listeners(&[], &[any]), Some(&grants)).is_ok());
        let shared = Listeners {
            shared_socket: true,
            ..listeners(&[], &[])
        };
        assert!(check_listeners(shared, None).is_err());
        assert!(check_listeners(shared, Some(&grants)).is_ok());
    }

    #[test]
    fn a_token_is_right_wrong_or_absent() {
        let check = TokenCheck::new(b"0123456789abcdef").expect("token");
        assert_eq!(check_token(Some(&check), b"0123456789abcdef"), Ok(true));
        assert!(check_token(Some(&check), b"0123456789abcdeX").is_err());
        assert_eq!(check_token(Some(&check), b""), Ok(false));
        assert_eq!(check_token(None, b"anything"), Ok(false));
    }
}
