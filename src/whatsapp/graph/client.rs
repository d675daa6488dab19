//! The Graph HTTP client (reqwest + rustls): configurable base URL and API version, bearer
//! token that is never logged or printed, per-request timeout, and retry with exponential
//! backoff on HTTP 5xx/429 and rate-limit codes (613, 138005, …). Error bodies are parsed
//! into [`GraphError::Api`].
use super::error::{ApiError, ErrorEnvelope, GraphError};
use super::permissions::{CallPermissions, UserId};
use super::settings::{CallingSettings, SettingsDocument};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// A bearer token. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
    Literal(Token),
}

impl TokenSource {
    pub fn resolve(&self) -> Result<Token, GraphError> {
        let raw = match self {
            TokenSource::Env(name) => std::env::var(name).map_err(|_| {
                GraphError::Token(format!("environment variable {name} is not set"))
            })?,
            TokenSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
                GraphError::Token(format!("cannot read token file {}: {e}", p.display()))
            })?,
            TokenSource::Literal(t) => t.0.clone(),
        };
        let t = raw.trim();
        if t.is_empty() {
            return Err(GraphError::Token("token is empty".into()));
        }
        Ok(Token(t.to_string()))
    }
}

/// Retry with exponential backoff: attempt n (0-based retry index) waits
/// `min(base * 2^n, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retry).
    pub retries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 2,
            base: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Everything the client needs to talk to one business number.
#[derive(Debug, Clone)]
pub struct GraphTarget {
    /// e.g. `https://graph.facebook.com` or `http://127.0.0.1:8081`.
    pub base_url: String,
    /// e.g. `v23.0`.
    pub api_version: String,
    pub token: Token,
    pub phone_number_id: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

/// Graph API client for one business number.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    target: GraphTarget,
}

impl GraphClient {
    pub fn new(target: GraphTarget) -> Result<Self, GraphError> {
        if !(target.base_url.starts_with("http://") || target.base_url.starts_with("https://")) {
            return Err(GraphError::Invalid(format!(
                "base URL must start with http:// or https://: {}",
                target.base_url
            )));
        }
        if !target.phone_number_id.chars().all(|c| c.is_ascii_digit())
            || target.phone_number_id.is_empty()
        {
            return Err(GraphError::Invalid(
                "phone_number_id must be digits only".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(target.timeout)
            .connect_timeout(target.timeout)
            .build()
            .map_err(|e| GraphError::Transport(e.to_string()))?;
        Ok(GraphClient { http, target })
    }

    pub fn target(&self) -> &GraphTarget {
        &self.target
    }

    /// `{base}/{version}/{phone_number_id}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}/{}",
            self.target.base_url.trim_end_matches('/'),
            self.target.api_version.trim_matches('/'),
            self.target.phone_number_id,
            path.trim_start_matches('/')
        )
    }

    /// GET a path below the phone number (query included), with retries.
    pub async fn get(&self, path: &str) -> Result<Value, GraphError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// POST JSON to a path below the phone number, with retries.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, GraphError> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, GraphError> {
        let url = self.url(path);
        let mut attempt = 0u32;
        loop {
            let result = self.send_once(method.clone(), &url, body).await;
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.target.retry.retries => {
                    let wait = self.target.retry.delay(attempt);
                    // the query may hold a user's number: log the path only
                    let endpoint = path.split('?').next().unwrap_or_default();
                    tracing::warn!(%method, endpoint, attempt = attempt + 1, ?wait, code = ?e.meta_code(), "Graph request failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) if attempt > 0 => {
                    return Err(GraphError::Exhausted {
                        attempts: attempt + 1,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, GraphError> {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.target.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| GraphError::Decode {
                status,
                detail: format!("body is not JSON: {e}"),
            });
        }
        match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(env) => Err(GraphError::Api(ApiError::from_envelope(status, env))),
            Err(_) => Err(GraphError::Decode {
                status,
                detail: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }

    fn transport(&self, e: reqwest::Error) -> GraphError {
        if e.is_timeout() {
            GraphError::Timeout(self.target.timeout)
        } else {
            // without the URL: its query may hold a user's number
            GraphError::Transport(e.without_url().to_string())
        }
    }

    /// `GET /{pnid}/settings[?include_sip_credentials=true]`.
    pub async fn get_settings(
        &self,
        include_sip_credentials: bool,
    ) -> Result<SettingsDocument, GraphError> {
        let path = if include_sip_credentials {
            "settings?include_sip_credentials=true"
        } else {
            "settings"
        };
        let v = self.get(path).await?;
        serde_json::from_value(v).map_err(|e| GraphError::Decode {
            status: 200,
            detail: format!("settings: {e}"),
        })
    }

    /// `POST /{pnid}/settings` with `{"calling": …}` (already validated by the caller).
    pub async fn post_settings(&self, calling: &CallingSettings) -> Result<(), GraphError> {
        let body = serde_json::json!({ "calling": calling });
        let v = self.post("settings", &body).await?;
        if v.get("success").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(GraphError::Decode {
                status: 200,
                detail: format!("settings POST did not report success: {v}"),
            })
        }
    }

    /// `GET /{pnid}/call_permissions?user_wa_id=…` (E.164) or `?recipient=…` (BSUID).
    pub async fn call_permissions(&self, user: &UserId) -> Result<CallPermissions, GraphError> {
        let v = self
            .get(&format!("call_permissions?{}", user.query_param()))
            .await?;
        serde_json::from_value(v).map_err(|e| GraphError::Decode {
            status: 200,
            detail: format!("call_permissions: {e}"),
        })
    }

    /// `POST /{pnid}/messages`: an interactive `call_permission_request`. Returns the wamid.
    pub async fn send_permission_request(
        &self,
        user: &UserId,
        body_text: &str,
    ) -> Result<String, GraphError> {
        if body_text.is_empty() || body_text.chars().count() > 1024 {
            return Err(GraphError::Invalid(
                "permission request body text must be 1..=1024 characters".into(),
            ));
        }
        let mut body = serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "type": "interactive",
            "interactive": {
                "type": "call_permission_request",
                "action": { "name": "call_permission_request" },
                "body": { "text": body_text }
            }
        });
        if let Some(obj) = body.as_object_mut() {
            match user {
                UserId::E164(d) => obj.insert("to".into(), Value::String(d.clone())),
                UserId::Bsuid(b) => obj.insert("recipient".into(), Value::String(b.clone())),
            };
        }
        let v = self.post("messages", &body).await?;
        v.pointer("/messages/0/id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| GraphError::Decode {
                status: 200,
                detail: format!("messages POST returned no message id: {v}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            retries: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(700),
        };
        assert_eq!(p.delay(0), Duration::from_millis(100));
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(400));
        assert_eq!(p.delay(3), Duration::from_millis(700));
        assert_eq!(p.delay(40), Duration::from_millis(700));
    }

    #[test]
    fn token_is_never_debug_printed() {
        let t = Token::new("EAAsecret");
        assert_eq!(format!("{t:?}"), "Token(***)");
        let target = GraphTarget {
            base_url: "http://127.0.0.1:1".into(),
            api_version: "v23.0".into(),
            token: t,
            phone_number_id: "1".into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        };
        assert!(!format!("{target:?}").contains("EAAsecret"));
    }

    #[test]
    fn url_joins_version_and_number() {
        let c = GraphClient::new(GraphTarget {
            base_url: "http://127.0.0.1:8081/".into(),
            api_version: "v23.0".into(),
            token: Token::new("x"),
            phone_number_id: "106540352242922".into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        })
        .unwrap();
        assert_eq!(
            c.url("settings"),
            "http://127.0.0.1:8081/v23.0/106540352242922/settings"
        );
    }
}
