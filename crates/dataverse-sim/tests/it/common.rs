//! Helpers shared by the integration tests.

use dataverse_sim::{RunningSimulator, Simulator, SimulatorBuilder, Transport};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A running simulator, a client that trusts it and a valid token.
pub(crate) struct Env {
    pub(crate) sim: RunningSimulator,
    pub(crate) http: reqwest::Client,
    pub(crate) token: String,
}

/// What a request got back.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub(crate) fn client_for(sim: &RunningSimulator) -> reqwest::Client {
    let mut b = reqwest::Client::builder();
    if let Some(pem) = sim.ca_certificate_pem() {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

pub(crate) async fn token(http: &reqwest::Client, sim: &RunningSimulator) -> String {
    let r = http
        .post(sim.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(crate::common::form_body(&[
            ("client_id", dataverse_sim::DEFAULT_CLIENT_ID),
            ("client_secret", dataverse_sim::DEFAULT_CLIENT_SECRET),
            ("grant_type", "client_credentials"),
            ("scope", &sim.scope()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn start_with(builder: SimulatorBuilder) -> Env {
    let sim = builder.start().await.unwrap();
    let http = client_for(&sim);
    let token = token(&http, &sim).await;
    Env { sim, http, token }
}

/// HTTPS, bundled metadata and the five demo rows.
pub(crate) async fn start() -> Env {
    start_with(Simulator::builder().demo_data()).await
}

/// Plain HTTP, empty tables.
pub(crate) async fn start_http() -> Env {
    start_with(Simulator::builder().transport(Transport::Http)).await
}

impl Env {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.sim.api_url(), path)
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            self.url(path)
        };
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Reply { status, headers, text }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], None).await
    }

    pub(crate) async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
        self.send(Method::PATCH, path, headers, Some(body)).await
    }
}

/// A form-urlencoded body (reqwest's `form` needs a feature the workspace does not enable).
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}
