//! Who a request comes from, as access control sees it: a TCP peer that presented the broker's
//! token (`Authorization: Bearer TOKEN`, or the `plexus_token` cookie the page sets once) or an
//! anonymous one, admitted and given its rights by the policy exactly like a bus connection
//! (`policy::admit`). Handlers read the rights to leave out what the viewer may not see.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::Dashboard;
use crate::peer::PeerInfo;
use crate::policy::admit::{admit, check_token};
use crate::policy::{Access, Denied};

/// The cookie the page keeps the token in.
pub const TOKEN_COOKIE: &str = "plexus_token";

/// A request's viewer and its rights.
#[derive(Debug, Clone)]
pub struct Viewer {
    access: Arc<Access>,
}

impl Viewer {
    /// Whether it may see who is behind connections and names (pid, uid, executable, client).
    pub fn details(&self) -> bool {
        self.access.list_details()
    }

    /// Whether it may watch the live feed; else why not.
    pub fn monitor(&self) -> Result<(), Denied> {
        self.access.monitor()
    }
}

/// The token a request presents: the `Authorization: Bearer` header, else the cookie.
fn presented(headers: &HeaderMap) -> &[u8] {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
    };
    bearer.or_else(cookie).unwrap_or_default().as_bytes()
}

/// Identifies the viewer of a request and admits it: a wrong token is answered 401, so is a
/// missing one on a listener beyond loopback; a viewer the policy lets nothing in is answered
/// 403. The viewer goes into the request's extensions.
pub async fn identify(
    Shared(dashboard): Shared<Arc<Dashboard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = dashboard.router.config();
    let peer_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let token = match check_token(config.token.as_ref(), presented(request.headers())) {
        Ok(token) => token,
        Err(Denied(_)) => {
            info!(addr = ?peer_addr, "dashboard request refused: wrong token");
            return unauthorized(
                "the token is not the broker's (--token-file); send it as Authorization: Bearer TOKEN",
            );
        }
    };
    let remote = config.http.is_some_and(|a| !a.ip().is_loopback());
    if remote && !token {
        return unauthorized(
            "this dashboard listens beyond loopback and needs the broker's token (--token-file): send Authorization: Bearer TOKEN, or enter it on the page",
        );
    }
    let mut peer = match peer_addr {
        Some(addr) => PeerInfo::from_tcp(addr),
        None => PeerInfo::from_tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
    };
    peer.client = "http".to_owned();
    peer.token = token;
    match admit(config.policy.as_deref(), config.token.as_ref(), &peer) {
        Ok(access) => {
            request.extensions_mut().insert(Viewer {
                access: Arc::new(access),
            });
            next.run(request).await
        }
        Err(Denied(message)) if !token && config.token.is_some() => unauthorized(&message),
        Err(Denied(message)) => (StatusCode::FORBIDDEN, format!("{message}\n")).into_response(),
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"plexus\"")],
        format!("{message}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), b"");
        headers.insert(
            header::COOKIE,
            "a=b; plexus_token=cookie-token; c=d"
                .parse()
                .expect("value"),
        );
        assert_eq!(presented(&headers), b"cookie-token");
        headers.insert(
            header::AUTHORIZATION,
            "Bearer header-token".parse().expect("value"),
        );
        assert_eq!(presented(&headers), b"header-token");
    }
}
