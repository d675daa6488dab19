//! The Graph commands reading the number, token and desired settings from SIP profiles
//! (`--profiles DIR`) against a real `whatsip sandbox` process.
mod graph_support;
use graph_support::*;
use std::os::unix::fs::PermissionsExt;

fn profiles(dir: &std::path::Path, sandbox_url: &str) -> String {
    let secrets = dir.join("secrets");
    let pw = secrets.join("15550001111.sip");
    let whatsapp = format!(
        r#"kind = "whatsapp"
name = "whatsapp"

[sip]
listen = "127.0.0.1:5061"
public_host = "gw.profile.test"
public_port = 5071

[tls]
mode = "sandbox"

[meta]
connect = "127.0.0.1:5062"
sandbox = true
allowed_sources = ["meta", "127.0.0.0/8"]

[graph]
base_url = "{sandbox_url}"
api_version = "v21.0"
token = {{ literal = "sandbox" }}

[[numbers]]
e164 = "+15550001111"
phone_number_id = "106540352242922"
sip_password = {{ file = "{pw}" }}
trunk = "pbx"
srtp_key_exchange = "sdes"
additional_codecs = ["PCMU"]
request_uri_user_params = {{ tgrp = "wacall" }}

[numbers.calling]
status = "ENABLED"
call_icon_visibility = "DEFAULT"
callback_permission_status = "ENABLED"

[numbers.calling.call_hours]
status = "ENABLED"
timezone_id = "Europe/Berlin"
weekly_operating_hours = [
  {{ day_of_week = "MONDAY", open_time = "0900", close_time = "1700" }},
]
holiday_schedule = [
  {{ date = "2099-12-25", start_time = "0000", end_time = "2359" }},
]
"#,
        pw = pw.display()
    );
    let pdir = dir.join("profiles");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("whatsapp.toml"), whatsapp).unwrap();
    let pbx = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sip-profiles/pbx.toml"
    ))
    .expect("shipped pbx profile");
    std::fs::write(pdir.join("pbx.toml"), pbx).unwrap();
    pdir.to_string_lossy().into_owned()
}

#[test]
fn push_pull_check_and_permissions_from_profiles() {
    let sb = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let pdir = profiles(dir.path(), &sb.url());
    let p = ["--profiles".to_string(), pdir.clone()];

    let push = run(&args(&["settings", "push", BUSINESS], &p), "unused");
    let (out, err) = text(&push);
    assert!(push.status.success(), "{out}\n{err}");
    let (_, nums) = sb.get("/sandbox/numbers");
    let n = &nums["numbers"][0];
    assert_eq!(n["hostname"], "gw.profile.test");
    assert_eq!(n["port"], 5071);
    assert_eq!(n["request_uri_user_params"]["tgrp"], "wacall");
    assert_eq!(n["additional_codecs"], serde_json::json!(["PCMU"]));

    let pull = run(
        &args(&["settings", "pull", BUSINESS, "--json"], &p),
        "unused",
    );
    let (out, err) = text(&pull);
    assert!(pull.status.success(), "{out}\n{err}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["calling"]["call_hours"]["timezone_id"], "Europe/Berlin");
    assert_eq!(
        got["calling"]["call_hours"]["holiday_schedule"][0]["date"],
        "2099-12-25"
    );
    let pw = dir.path().join("secrets/15550001111.sip");
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let check = run(&args(&["settings", "check", BUSINESS], &p), "unused");
    let (out, _) = text(&check);
    assert_eq!(check.status.code(), Some(0), "{out}");
    assert!(
        out.contains("[ok  ] Meta's SIP hostname is gw.profile.test"),
        "{out}"
    );
    assert!(out.contains("[ok  ] key exchange SDES matches"), "{out}");
    assert!(out.contains("matches Meta's"), "{out}");

    let perm = run(
        &args(&["permissions", "check", "+15551234567"], &p),
        "unused",
    );
    let (out, err) = text(&perm);
    assert!(perm.status.success(), "{out}\n{err}");
    assert!(out.contains("permission: permanent"), "{out}");

    let unknown = run(&args(&["settings", "pull", "+15559999999"], &p), "unused");
    let (_, err) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        err.contains("+15559999999 is not a business number"),
        "{err}"
    );
}
