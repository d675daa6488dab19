//! The HTTP API over real HTTP on a loopback port: JSON bodies and the Prometheus text format.
use std::time::Duration;
use whatsip::api::{self, ApiState, NewCall, Readiness, TrunkStatus};
use whatsip::metrics::{Flow, Leg};
use whatsip::sip::method::Method;
use whatsip::store::{CallState, Direction, Reason, Recorder, Store, Timestamp};

const WAIT: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

async fn get_json(c: &reqwest::Client, url: String) -> (u16, serde_json::Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers()
    );
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_calls_records_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("var/whatsip.db");
    let (recorder, writer) = Recorder::spawn(Store::open(&db).unwrap(), 64).unwrap();
    let state = ApiState::new().with_records(&db, Some(recorder.monitor()));

    state.health.set_component("sip_whatsapp", Readiness::Ready);
    state.health.set_component("sip_trunk", Readiness::Ready);
    state.health.set_trunk("asterisk", TrunkStatus::Up);

    // One call that ends (Completed), one still up, as the B2BUA would drive them.
    let t0 = Timestamp::now();
    let done = state.calls.insert(NewCall::new(
        "gw-done",
        Direction::UserInitiated,
        "+15550001111",
        "+15551234567",
        t0,
    ));
    recorder.start(done.to_record());
    recorder.update("gw-done", done.transition(CallState::Accepted, t0));
    done.media.whatsapp_to_pbx(172);
    done.media.pbx_to_whatsapp(172);
    let ended = state.calls.finish("gw-done", CallState::Completed).unwrap();
    recorder.complete(
        "gw-done",
        ended.completion(
            CallState::Completed,
            Some(Reason::text("BYE from user")),
            Timestamp::now(),
        ),
    );

    let mut live_call = NewCall::new(
        "gw-live",
        Direction::BusinessInitiated,
        "+15550001111",
        "US.13491208655302741918",
        t0,
    );
    live_call.trunk = Some("asterisk".into());
    let live = state.calls.insert(live_call);
    recorder.start(live.to_record());
    live.transition(CallState::Ringing, t0);
    for _ in 0..3 {
        live.media.pbx_to_whatsapp(100);
    }
    live.media.decrypt_failure();
    state
        .metrics
        .sip_request(Leg::Whatsapp, Flow::In, &Method::Invite);
    state.metrics.sip_response(Leg::Pbx, Flow::Out, 180);
    state.metrics.sip_auth_failure(Leg::Whatsapp);
    assert!(recorder.flush(WAIT));

    let (task, addr) = api::serve("127.0.0.1:0".parse().unwrap(), state.clone())
        .await
        .unwrap();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    let base = format!("http://{addr}");
    let c = client();

    // /healthz
    let (code, h) = get_json(&c, format!("{base}/healthz")).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["uptime_s"].is_u64());
    assert_eq!(h["components"]["sip_whatsapp"], "ready");
    assert_eq!(h["trunks"]["asterisk"], "up");
    state.health.set_trunk("asterisk", TrunkStatus::Down);
    let (code, h) = get_json(&c, format!("{base}/healthz")).await;
    assert_eq!(code, 503);
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["trunks"]["asterisk"], "down");

    // /calls
    let (code, calls) = get_json(&c, format!("{base}/calls")).await;
    assert_eq!(code, 200);
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["id"], "gw-live");
    assert_eq!(calls[0]["state"], "Ringing");
    assert_eq!(calls[0]["direction"], "business_initiated");
    assert_eq!(calls[0]["user"], "US.13491208655302741918");
    assert_eq!(calls[0]["trunk"], "asterisk");
    assert_eq!(calls[0]["media"]["pbx_to_whatsapp"]["packets"], 3);
    assert_eq!(calls[0]["media"]["decrypt_failures"], 1);
    assert!(calls[0]["answered_at"].is_null());
    let (code, one) = get_json(&c, format!("{base}/calls/gw-live")).await;
    assert_eq!(code, 200);
    assert_eq!(one["id"], "gw-live");
    let (code, err) = get_json(&c, format!("{base}/calls/gw-done")).await;
    assert_eq!(code, 404);
    assert!(err["error"].as_str().unwrap().contains("gw-done"));

    // /records
    let (code, recs) = get_json(&c, format!("{base}/records")).await;
    assert_eq!(code, 200);
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 2);
    let done_rec = recs.iter().find(|r| r["id"] == "gw-done").unwrap();
    assert_eq!(done_rec["state"], "Completed");
    assert_eq!(done_rec["open"], false);
    assert_eq!(done_rec["reason"]["text"], "BYE from user");
    assert_eq!(done_rec["media"]["whatsapp_to_pbx"]["bytes"], 172);
    assert!(done_rec["duration_s"].is_number());
    let live_rec = recs.iter().find(|r| r["id"] == "gw-live").unwrap();
    assert_eq!(live_rec["open"], true);
    assert!(live_rec["duration_s"].is_null());
    let (_, f) = get_json(
        &c,
        format!("{base}/records?number=%2B15551234567&state=completed&limit=5"),
    )
    .await;
    assert_eq!(f.as_array().unwrap().len(), 1);
    let (_, f) = get_json(
        &c,
        format!("{base}/records?direction=business_initiated&since=1h"),
    )
    .await;
    assert_eq!(f.as_array().unwrap().len(), 1);
    assert_eq!(f[0]["id"], "gw-live");
    let (_, f) = get_json(&c, format!("{base}/records?since=2999-01-01")).await;
    assert!(f.as_array().unwrap().is_empty());
    let (code, r) = get_json(&c, format!("{base}/records/gw-done")).await;
    assert_eq!(code, 200);
    assert_eq!(r["user"], "+15551234567");
    let (code, _) = get_json(&c, format!("{base}/records/nope")).await;
    assert_eq!(code, 404);
    for bad in [
        "state=Answered",
        "since=soon",
        "limit=-1",
        "direction=x",
        "colour=red",
    ] {
        let (code, e) = get_json(&c, format!("{base}/records?{bad}")).await;
        assert_eq!(code, 400, "{bad}");
        assert!(e["error"].is_string());
    }

    // /metrics
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        "whatsip_calls_total{direction=\"user_initiated\",outcome=\"completed\"} 1",
        "whatsip_calls_total{direction=\"business_initiated\",outcome=\"completed\"} 0",
        "whatsip_calls_active{direction=\"business_initiated\"} 1",
        "whatsip_calls_active{direction=\"user_initiated\"} 0",
        "whatsip_sip_requests_total{leg=\"whatsapp\",direction=\"in\",method=\"INVITE\"} 1",
        "whatsip_sip_responses_total{leg=\"pbx\",direction=\"out\",class=\"1xx\"} 1",
        "whatsip_sip_auth_failures_total{leg=\"whatsapp\"} 1",
        "whatsip_sip_parse_errors_total{leg=\"pbx\"} 0",
        // finished call (1 × 172) + live call (3 × 100)
        "whatsip_media_packets_total{direction=\"pbx_to_whatsapp\"} 4",
        "whatsip_media_bytes_total{direction=\"pbx_to_whatsapp\"} 472",
        "whatsip_media_bytes_total{direction=\"whatsapp_to_pbx\"} 172",
        "whatsip_media_decrypt_failures_total 1",
        "whatsip_records_written_total 4",
        "whatsip_records_dropped_total 0",
        "whatsip_trunk_up{trunk=\"asterisk\"} 0",
        "# TYPE whatsip_calls_total counter",
        "# TYPE whatsip_calls_active gauge",
    ] {
        assert!(has(line), "missing {line:?} in\n{text}");
    }
    // Text format: every sample is `name{labels} value` with a numeric value; families are
    // announced by TYPE before their samples.
    let mut typed = std::collections::HashSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        let (series, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name), "{name} has no TYPE line before it");
    }

    // Unknown path: JSON 404.
    let (code, _) = get_json(&c, format!("{base}/nope")).await;
    assert_eq!(code, 404);

    // The API holds no Recorder: once the gateway drops its own, the writer drains and stops
    // even while the server (and its keep-alive connections) are still up.
    drop(recorder);
    tokio::task::spawn_blocking(move || writer.join_timeout(WAIT))
        .await
        .unwrap()
        .expect("writer stops when the last Recorder is dropped");
    task.abort();
}

#[tokio::test]
async fn records_disabled_and_graceful_shutdown() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (task, addr) =
        api::serve_with_shutdown("127.0.0.1:0".parse().unwrap(), ApiState::new(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    let c = client();
    let (code, body) = get_json(&c, format!("http://{addr}/records")).await;
    assert_eq!(code, 404);
    assert_eq!(body["error"], "call records are disabled");
    // No components registered yet: nothing is down.
    let (code, h) = get_json(&c, format!("http://{addr}/healthz")).await;
    assert_eq!(code, 200);
    assert_eq!(h["components"], serde_json::json!({}));
    tx.send(()).unwrap();
    let res = tokio::time::timeout(WAIT, task)
        .await
        .expect("server stops on shutdown");
    res.unwrap().unwrap();

    // A busy port is a clear error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = api::serve(l.local_addr().unwrap(), ApiState::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot listen on"), "{err}");
}
