//! Logging runs to an MLflow tracking server over its REST API (`/api/2.0/mlflow/...`):
//! the experiment found by name or created, one MLflow run per scalelab run (tagged
//! `scalelab.run_id`, so logging a run again finds it instead of making a second), its
//! parameters and metrics in `runs/log-batch` calls within MLflow's limits (1000 metrics and
//! 100 parameters a call), its files as artifacts through the server's artifact proxy
//! (`mlflow-artifacts:` URIs, `mlflow server`'s default), and its end status.
//!
//! A server that is down or silent costs one failed request: [`Client::log`] stops at the
//! first connection error or timeout and says so, and the caller keeps what was not sent for
//! a later sync. Only answers that say "try again" (HTTP 429 and 5xx) are retried, three
//! times at most, from a server that is up.

use std::time::Duration;

use serde_json::{Value, json};

use crate::view::{Tracked, TrackedStatus};

/// MLflow's limits per `log-batch` call.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
/// MLflow's longest parameter value (`MAX_PARAM_VAL_LENGTH`, 6000 since MLflow 2.x).
const MAX_PARAM_VALUE: usize = 6000;
/// The tag that names the scalelab run.
pub const RUN_TAG: &str = "scalelab.run_id";

/// Errors logging to MLflow.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server could not be reached or did not answer in time: nothing more is tried.
    #[error(
        "MLflow server {uri} unreachable: {message}\nhint: start it (mlflow server --host 127.0.0.1 --port 5000) or check MLFLOW_TRACKING_URI; what was not sent can be sent later with `scalelab study sync DIR --mlflow URI` (a single run: train it again with --mlflow)"
    )]
    Unreachable {
        /// The tracking URI.
        uri: String,
        /// What failed.
        message: String,
    },
    /// The server answered with an error.
    #[error(
        "MLflow server {uri}: {endpoint} answered {status}: {body}\nhint: check the server's log; the tracking URI must be the server's root (e.g. http://127.0.0.1:5000)"
    )]
    Refused {
        /// The tracking URI.
        uri: String,
        /// The endpoint called.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The answer's body.
        body: String,
    },
    /// The tracking URI is not one this client speaks.
    #[error(
        "MLflow tracking URI {uri:?} is not an http:// or https:// address\nhint: give the server's address, e.g. --mlflow http://127.0.0.1:5000 (file stores and databases are for the Python client only)"
    )]
    BadUri {
        /// What was given.
        uri: String,
    },
}

/// What logging one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// Logged now, as this MLflow run id.
    Now(String),
    /// Logged before (a finished MLflow run carries its tag): nothing sent.
    Already(String),
}

/// A client of one tracking server.
pub struct Client {
    uri: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl Client {
    /// A client of the server at `uri` whose requests each give up after `timeout`.
    /// Credentials come from MLflow's own variables: `MLFLOW_TRACKING_TOKEN` (bearer) or
    /// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic).
    pub fn new(uri: &str, timeout: Duration) -> Result<Self, MlflowError> {
        let uri = uri.trim_end_matches('/').to_string();
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(MlflowError::BadUri { uri });
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        let auth = match (
            std::env::var("MLFLOW_TRACKING_TOKEN"),
            std::env::var("MLFLOW_TRACKING_USERNAME"),
            std::env::var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Ok(token), _, _) if !token.is_empty() => Some(format!("Bearer {token}")),
            (_, Ok(user), Ok(password)) => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
            _ => None,
        };
        Ok(Self {
            uri,
            agent: ureq::Agent::new_with_config(config),
            auth,
        })
    }

    /// The tracking URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Sends one request; retries 429 and 5xx answers (three tries, 0.5 s and 1 s apart),
    /// never a connection error or timeout. Returns the answer's JSON (`{}` when empty).
    fn request(
        &self,
        method: &str,
        endpoint: &str,
        body: Option<Vec<u8>>,
        query: &[(&str, &str)],
    ) -> Result<Value, MlflowError> {
        let url = format!("{}{endpoint}", self.uri);
        let mut wait = Duration::from_millis(500);
        for attempt in 0..3 {
            let result = match method {
                "GET" => {
                    let mut request = self.agent.get(&url);
                    for (k, v) in query {
                        request = request.query(*k, *v);
                    }
                    if let Some(auth) = &self.auth {
                        request = request.header("Authorization", auth);
                    }
                    request.call()
                }
                _ => {
                    let mut request = match method {
                        "PUT" => self.agent.put(&url),
                        _ => self.agent.post(&url),
                    }
                    .header(
                        "Content-Type",
                        if method == "PUT" {
                            "application/octet-stream"
                        } else {
                            "application/json"
                        },
                    );
                    if let Some(auth) = &self.auth {
                        request = request.header("Authorization", auth);
                    }
                    request.send(body.clone().unwrap_or_default())
                }
            };
            let mut response = result.map_err(|e| MlflowError::Unreachable {
                uri: self.uri.clone(),
                message: format!("{method} {endpoint}: {e}"),
            })?;
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            if (200..300).contains(&status) {
                return Ok(serde_json::from_str(&text).unwrap_or_else(|_| json!({})));
            }
            let transient = status == 429 || status >= 500;
            if !transient || attempt == 2 {
                return Err(MlflowError::Refused {
                    uri: self.uri.clone(),
                    endpoint: endpoint.to_string(),
                    status,
                    body: text.chars().take(500).collect(),
                });
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        self.request("POST", endpoint, Some(body.to_string().into_bytes()), &[])
    }

    /// The id of experiment `name`, created when missing.
    pub fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        match self.request(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name",
            None,
            &[("experiment_name", name)],
        ) {
            Ok(found) => Ok(found["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()),
            Err(MlflowError::Refused { status: 404, .. }) => {
                let created = self.post(
                    "/api/2.0/mlflow/experiments/create",
                    &json!({ "name": name }),
                )?;
                Ok(created["experiment_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string())
            }
            Err(e) => Err(e),
        }
    }

    /// The MLflow run of experiment `experiment` tagged with `run_id`, with its status.
    fn find(
        &self,
        experiment: &str,
        run_id: &str,
    ) -> Result<Option<(String, String, String)>, MlflowError> {
        let found = self.post(
            "/api/2.0/mlflow/runs/search",
            &json!({
                "experiment_ids": [experiment],
                "filter": format!("tags.`{RUN_TAG}` = '{run_id}'"),
                "max_results": 1,
            }),
        )?;
        Ok(found["runs"]
            .as_array()
            .and_then(|runs| runs.first())
            .map(|run| {
                let info = &run["info"];
                let field = |k: &str| info[k].as_str().unwrap_or_default().to_string();
                (field("run_id"), field("status"), field("artifact_uri"))
            }))
    }

    /// Logs `run` (with `artifacts`, `(name, bytes)`) into experiment `experiment`, unless a
    /// finished MLflow run already holds it; an unfinished one (an earlier attempt cut off)
    /// is completed.
    pub fn log(
        &self,
        experiment: &str,
        run: &Tracked,
        artifacts: &[(String, Vec<u8>)],
    ) -> Result<Logged, MlflowError> {
        let experiment_id = self.experiment(experiment)?;
        let (mlflow_id, artifact_uri) = match self.find(&experiment_id, &run.run_id)? {
            Some((id, status, _)) if status == "FINISHED" || status == "FAILED" => {
                return Ok(Logged::Already(id));
            }
            // Metrics logged again at the same step and time are kept once by MLflow's store
            // (a metric's key is (key, step, timestamp, value)), so finishing is idempotent.
            Some((id, _, uri)) => (id, uri),
            None => {
                let created = self.post(
                    "/api/2.0/mlflow/runs/create",
                    &json!({
                        "experiment_id": experiment_id,
                        "run_name": run.run_id,
                        "start_time": millis(run.start_time),
                        "tags": [
                            {"key": RUN_TAG, "value": run.run_id},
                            {"key": "mlflow.source.name", "value": "scalelab"},
                        ],
                    }),
                )?;
                let info = &created["run"]["info"];
                (
                    info["run_id"].as_str().unwrap_or_default().to_string(),
                    info["artifact_uri"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            }
        };
        let params: Vec<Value> = run
            .params
            .iter()
            .map(|(key, value)| {
                let text: String = value.to_string().chars().take(MAX_PARAM_VALUE).collect();
                json!({ "key": key, "value": text })
            })
            .collect();
        let metrics: Vec<Value> = run
            .metrics
            .iter()
            .filter(|m| m.value.is_finite())
            .map(|m| {
                json!({
                    "key": m.key,
                    "value": m.value,
                    "timestamp": millis(m.wall_time),
                    "step": m.step,
                })
            })
            .collect();
        for chunk in params.chunks(MAX_PARAMS) {
            self.post(
                "/api/2.0/mlflow/runs/log-batch",
                &json!({ "run_id": mlflow_id, "params": chunk }),
            )?;
        }
        for chunk in metrics.chunks(MAX_METRICS) {
            self.post(
                "/api/2.0/mlflow/runs/log-batch",
                &json!({ "run_id": mlflow_id, "metrics": chunk }),
            )?;
        }
        if let Some(path) = artifact_uri.strip_prefix("mlflow-artifacts:/") {
            for (name, bytes) in artifacts {
                let endpoint = format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{}/{name}",
                    path.trim_matches('/')
                );
                self.request("PUT", &endpoint, Some(bytes.clone()), &[])?;
            }
        }
        let status = match run.status {
            TrackedStatus::Completed => "FINISHED",
            TrackedStatus::Diverged => "FAILED",
        };
        self.post(
            "/api/2.0/mlflow/runs/update",
            &json!({ "run_id": mlflow_id, "status": status, "end_time": millis(run.end_time) }),
        )?;
        Ok(Logged::Now(mlflow_id))
    }
}

/// Unix seconds as MLflow's milliseconds.
fn millis(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// Standard base64 (RFC 4648) of `bytes`, for basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 §10's test vectors.
    #[test]
    fn base64_matches_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn only_http_uris_are_taken() {
        assert!(matches!(
            Client::new("file:///tmp/mlruns", Duration::from_secs(1)),
            Err(MlflowError::BadUri { .. })
        ));
        assert!(Client::new("http://127.0.0.1:5000/", Duration::from_secs(1)).is_ok());
    }

    /// Nothing listens on port 1: one failed request, said as unreachable, at once.
    #[test]
    fn a_server_that_is_down_costs_one_failed_request() {
        let client = Client::new("http://127.0.0.1:1", Duration::from_secs(5)).unwrap();
        let start = std::time::Instant::now();
        let err = client.experiment("x").unwrap_err();
        assert!(matches!(err, MlflowError::Unreachable { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// A server that accepts and never answers costs one timeout, not three.
    #[test]
    fn a_silent_server_costs_one_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _keep = std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(4).collect();
            std::thread::sleep(Duration::from_secs(10));
            drop(held);
        });
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(700),
        )
        .unwrap();
        let start = std::time::Instant::now();
        let err = client.experiment("x").unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, MlflowError::Unreachable { .. }), "{err}");
        assert!(
            took >= Duration::from_millis(650) && took < Duration::from_millis(1400),
            "{took:?}"
        );
    }
}
