//! `whatsip settings pull/push/check` against a real `whatsip sandbox` process.
mod graph_support;
use graph_support::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn write_json(dir: &std::path::Path, name: &str, v: &serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p.to_string_lossy().into_owned()
}

fn valid_hours() -> serde_json::Value {
    json!({"status":"ENABLED","timezone_id":"America/Manaus",
        "weekly_operating_hours":[
            {"day_of_week":"MONDAY","open_time":"0400","close_time":"1020"},
            {"day_of_week":"MONDAY","open_time":"1100","close_time":"1800"},
            {"day_of_week":"TUESDAY","open_time":"0108","close_time":"1020"}],
        "holiday_schedule":[{"date":"2099-01-01","start_time":"0000","end_time":"2359"}]})
}

#[test]
fn push_then_pull_round_trips_and_password_file_is_0600() {
    let sb = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let hours = write_json(dir.path(), "hours.json", &valid_hours());
    let push = run(
        &args(
            &[
                "settings",
                "push",
                BUSINESS,
                "--status",
                "ENABLED",
                "--call-icon-visibility",
                "DISABLE_ALL",
                "--callback-permission-status",
                "DISABLED",
                "--call-hours",
                &hours,
                "--sip-host",
                "gw.example.com",
                "--sip-port",
                "5071",
                "--sip-param",
                "tgrp=wacall",
                "--srtp-key-exchange",
                "DTLS",
                "--codec",
                "PCMU",
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, err) = text(&push);
    assert!(push.status.success(), "{out}\n{err}");
    assert!(
        out.contains(
            "~ calling.sip.servers[0].hostname: \"gateway.whatsip.test\" -> \"gw.example.com\""
        ),
        "{out}"
    );
    assert!(out.contains("pushed"), "{out}");

    let pw = dir.path().join("secrets/15550001111.sip");
    let pw_s = pw.to_string_lossy().into_owned();
    let pull = run(
        &args(
            &[
                "settings",
                "pull",
                BUSINESS,
                "--json",
                "--password-file",
                &pw_s,
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, err) = text(&pull);
    assert!(pull.status.success(), "{out}\n{err}");
    let got: serde_json::Value = serde_json::from_str(&out).expect("pull --json prints JSON");
    let c = &got["calling"];
    assert_eq!(c["status"], "ENABLED");
    assert_eq!(c["call_icon_visibility"], "DISABLE_ALL");
    assert_eq!(c["callback_permission_status"], "DISABLED");
    assert_eq!(c["call_hours"], valid_hours());
    assert_eq!(c["sip"]["status"], "ENABLED");
    assert_eq!(c["sip"]["servers"][0]["hostname"], "gw.example.com");
    assert_eq!(c["sip"]["servers"][0]["port"], 5071);
    assert_eq!(
        c["sip"]["servers"][0]["request_uri_user_params"],
        json!({"tgrp":"wacall"})
    );
    assert_eq!(c["srtp_key_exchange_protocol"], "DTLS");
    assert_eq!(c["audio"]["additional_codecs"], json!(["PCMU"]));
    assert!(
        c["sip"]["servers"][0].get("sip_user_password").is_none(),
        "password printed without --show-password"
    );

    let mode = std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&pw).unwrap().trim().to_string();
    assert_eq!(stored.len(), 32);
    assert!(!out.contains(&stored) && !err.contains(&stored));

    let shown = run(
        &args(
            &[
                "settings",
                "pull",
                BUSINESS,
                "--show-password",
                "--password-file",
                &pw_s,
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, _) = text(&shown);
    assert!(
        out.contains(&format!("sip_user_password:            {stored}")),
        "{out}"
    );
}

#[test]
fn push_new_hostname_repoints_the_sandbox_sip_target_and_dry_run_does_not() {
    let sb = Sandbox::start();
    let dry = run(
        &args(
            &[
                "settings",
                "push",
                BUSINESS,
                "--sip-host",
                "dry.example.com",
                "--dry-run",
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, err) = text(&dry);
    assert!(dry.status.success(), "{out}\n{err}");
    assert!(out.contains("dry run: would POST"), "{out}");
    let (_, nums) = sb.get("/sandbox/numbers");
    assert_eq!(nums["numbers"][0]["hostname"], "gateway.whatsip.test");
    assert_eq!(nums["numbers"][0]["port"], 5061);

    let push = run(
        &args(
            &[
                "settings",
                "push",
                BUSINESS,
                "--sip-host",
                "new.example.com",
                "--sip-port",
                "5081",
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    assert!(push.status.success(), "{:?}", text(&push));
    let (_, nums) = sb.get("/sandbox/numbers");
    assert_eq!(nums["numbers"][0]["e164"], "+15550001111");
    assert_eq!(nums["numbers"][0]["hostname"], "new.example.com");
    assert_eq!(nums["numbers"][0]["port"], 5081);
    assert_eq!(nums["numbers"][0]["has_password"], true);
    assert_eq!(
        nums["numbers"][0]["additional_codecs"],
        json!(["PCMA", "PCMU"])
    );
}

struct Rule {
    name: &'static str,
    message: &'static str,
    hours: serde_json::Value,
}

fn rules() -> Vec<Rule> {
    let wk = |d: &str, o: &str, c: &str| json!({"day_of_week": d, "open_time": o, "close_time": c});
    let with = |weekly: serde_json::Value, holidays: serde_json::Value, tz: &str| json!({"status":"ENABLED","timezone_id": tz, "weekly_operating_hours": weekly, "holiday_schedule": holidays});
    let mon = json!([wk("MONDAY", "0900", "1700")]);
    let hol = |d: &str| json!({"date": d, "start_time": "0000", "end_time": "2359"});
    let many: Vec<_> = (1..=21).map(|d| hol(&format!("2099-01-{d:02}"))).collect();
    vec![
        Rule {
            name: "timezone",
            message: "Timezone is invalid in call_hours",
            hours: with(mon.clone(), json!([]), "Mars/Olympus"),
        },
        Rule {
            name: "hhmm",
            message: "Invalid schedule for call_hours",
            hours: with(json!([wk("MONDAY", "09:00", "1700")]), json!([]), "UTC"),
        },
        Rule {
            name: "open-before-close",
            message: "Invalid schedule for call_hours",
            hours: with(json!([wk("MONDAY", "1700", "0900")]), json!([]), "UTC"),
        },
        Rule {
            name: "two-per-day",
            message: "More than 2 entries not allowed in weekly_operating_hours schedule in call_hours",
            hours: with(
                json!([
                    wk("MONDAY", "0100", "0200"),
                    wk("MONDAY", "0300", "0400"),
                    wk("MONDAY", "0500", "0600")
                ]),
                json!([]),
                "UTC",
            ),
        },
        Rule {
            name: "overlap",
            message: "Overlapping schedule in call_hours is not allowed",
            hours: with(
                json!([wk("FRIDAY", "0800", "1200"), wk("FRIDAY", "1130", "1400")]),
                json!([]),
                "UTC",
            ),
        },
        Rule {
            name: "weekly-empty",
            message: "weekly_operating_hours in call_hours cannot be empty",
            hours: with(json!([]), json!([]), "UTC"),
        },
        Rule {
            name: "twenty-holidays",
            message: "More than 20 entries not allowed in holiday_schedule in call_hours",
            hours: with(mon.clone(), json!(many), "UTC"),
        },
        Rule {
            name: "date-format",
            message: "Date format in holiday_schedule for call_hours is invalid",
            hours: with(mon.clone(), json!([hol("01/01/2099")]), "UTC"),
        },
        Rule {
            name: "past-date",
            message: "Holiday given in call_hours is a past date",
            hours: with(mon.clone(), json!([hol("2020-01-01")]), "UTC"),
        },
        Rule {
            name: "status",
            message: "Invalid status",
            hours: json!({"status":"SOMETIMES","timezone_id":"UTC","weekly_operating_hours": mon}),
        },
    ]
}

#[test]
fn every_call_hours_rule_is_refused_locally_and_by_the_twin() {
    let sb = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    for r in rules() {
        let f = write_json(dir.path(), &format!("{}.json", r.name), &r.hours);
        let local = run(
            &args(
                &["settings", "push", BUSINESS, "--call-hours", &f],
                &sb.graph_args(),
            ),
            "sandbox",
        );
        let (out, err) = text(&local);
        assert_eq!(local.status.code(), Some(1), "{}: {out}\n{err}", r.name);
        assert!(err.contains("refused locally"), "{}: {err}", r.name);
        assert!(
            err.contains(r.message),
            "{}: expected {:?} in {err}",
            r.name,
            r.message
        );

        let forced = run(
            &args(
                &[
                    "settings",
                    "push",
                    BUSINESS,
                    "--call-hours",
                    &f,
                    "--no-validate",
                ],
                &sb.graph_args(),
            ),
            "sandbox",
        );
        let (out, err) = text(&forced);
        assert_eq!(forced.status.code(), Some(1), "{}: {out}\n{err}", r.name);
        assert!(
            err.contains("Meta refused the settings"),
            "{}: {err}",
            r.name
        );
        assert!(err.contains("Meta 100 (HTTP 400)"), "{}: {err}", r.name);
        assert!(
            err.contains(r.message),
            "{}: expected {:?} in {err}",
            r.name,
            r.message
        );
    }
    // nothing invalid was stored
    let (_, body) = http(
        sb.port,
        "GET",
        &format!("/v23.0/{PNID}/settings"),
        Some("sandbox"),
        None,
    );
    assert!(body["calling"].get("call_hours").is_none(), "{body}");
}

#[test]
fn twin_checks_the_bearer_token_and_refuses_graph_calls_while_sip_is_enabled() {
    let sb = Sandbox::start();
    let bad = run(
        &args(&["settings", "pull", BUSINESS], &sb.graph_args()),
        "wrong",
    );
    let (_, err) = text(&bad);
    assert_eq!(bad.status.code(), Some(1));
    assert!(err.contains("Meta 190 (HTTP 401)"), "{err}");

    let (status, body) = http(
        sb.port,
        "GET",
        &format!("/v19.0/{PNID}/settings"),
        None,
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["type"], "OAuthException");

    let (status, body) = http(
        sb.port,
        "GET",
        &format!("/v19.0/{PNID}/settings?include_sip_credentials=true"),
        Some("sandbox"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        body["calling"]["sip"]["servers"][0]["sip_user_password"]
            .as_str()
            .map(str::len),
        Some(32)
    );
    let (_, body) = http(
        sb.port,
        "GET",
        &format!("/v19.0/{PNID}/settings"),
        Some("sandbox"),
        None,
    );
    assert!(
        body["calling"]["sip"]["servers"][0]
            .get("sip_user_password")
            .is_none()
    );

    let call = json!({"messaging_product":"whatsapp","to":"15551234567","action":"connect",
        "session":{"sdp_type":"offer","sdp":"v=0\r\n"}});
    let (status, body) = http(
        sb.port,
        "POST",
        &format!("/v23.0/{PNID}/calls"),
        Some("sandbox"),
        Some(&call),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 131055, "{body}");
}

#[test]
fn settings_check_finds_each_problem_with_its_fix() {
    let sb = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["gw.example.com".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    let cert_s = cert.to_string_lossy().into_owned();
    let pw = dir.path().join("pw.sip").to_string_lossy().into_owned();

    let push = run(
        &args(
            &[
                "settings",
                "push",
                BUSINESS,
                "--sip-host",
                "gw.example.com",
                "--srtp-key-exchange",
                "SDES",
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    assert!(push.status.success(), "{:?}", text(&push));

    let check = |extra: &[&str]| {
        let mut a = args(
            &["settings", "check", BUSINESS, "--password-file", &pw],
            &sb.graph_args(),
        );
        a.extend(extra.iter().map(|s| s.to_string()));
        run(&a, "sandbox")
    };
    // before pull: password missing
    let o = check(&[
        "--public-host",
        "gw.example.com",
        "--cert",
        &cert_s,
        "--media",
        "SDES",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("[FAIL] no SIP password stored at"), "{out}");
    assert!(
        out.contains("fix: whatsip settings pull +15550001111"),
        "{out}"
    );

    let pull = run(
        &args(
            &["settings", "pull", BUSINESS, "--password-file", &pw],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    assert!(pull.status.success());
    let o = check(&[
        "--public-host",
        "gw.example.com",
        "--cert",
        &cert_s,
        "--media",
        "SDES",
        "--listen",
        "0.0.0.0:5061",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("no problem found"), "{out}");
    assert!(out.contains("[ok  ] certificate"), "{out}");

    let o = check(&[
        "--public-host",
        "sip.other.example",
        "--public-port",
        "5081",
        "--cert",
        &cert_s,
        "--media",
        "DTLS",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "[FAIL] Meta sends INVITEs to gw.example.com, but this gateway is sip.other.example"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "fix: whatsip settings push +15550001111 --sip-host sip.other.example --sip-port 5081"
        ),
        "{out}"
    );
    assert!(
        out.contains("[FAIL] Meta connects to port 5061, but this gateway's public port is 5081"),
        "{out}"
    );
    assert!(
        out.contains("[FAIL] Meta uses SDES key exchange, this gateway's media mode is DTLS"),
        "{out}"
    );

    let other =
        rcgen::generate_simple_self_signed(vec!["elsewhere.example.com".to_string()]).unwrap();
    std::fs::write(&cert, other.cert.pem()).unwrap();
    let o = check(&[
        "--public-host",
        "gw.example.com",
        "--cert",
        &cert_s,
        "--media",
        "SDES",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("is not valid for gw.example.com"), "{out}");

    let off = run(
        &args(
            &[
                "settings",
                "push",
                BUSINESS,
                "--status",
                "DISABLED",
                "--sip-status",
                "DISABLED",
            ],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    assert!(off.status.success(), "{:?}", text(&off));
    let o = check(&["--public-host", "gw.example.com"]);
    let (out, _) = text(&o);
    assert!(out.contains("[FAIL] calling status is DISABLED"), "{out}");
    assert!(out.contains("[FAIL] SIP is not enabled"), "{out}");
}
