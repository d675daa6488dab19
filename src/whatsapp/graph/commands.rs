//! The `whatsip settings …` and `whatsip permissions …` commands: thin glue from CLI
//! arguments to the library (client, validation, diff, permission checks). Each returns the
//! process exit code: 0 success, 1 refused or failed, 2 bad invocation.
use super::client::{GraphClient, GraphTarget, RetryPolicy, TokenSource};
use super::error::GraphError;
use super::permissions::{CallPermissions, UserId, unix_now};
use super::settings::{self, CallHours, CallingSettings, SettingsInputs};
use crate::cli::{GraphArgs, LocalSipArgs, SettingsBodyArgs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn business_digits(number: &str) -> Result<String, String> {
    match UserId::parse(number)? {
        UserId::E164(d) => Ok(d),
        UserId::Bsuid(_) => Err(format!("{number} is not an E.164 business number")),
    }
}

/// Everything a command needs about one business number.
#[derive(Debug, Clone)]
pub struct NumberContext {
    /// E.164 digits of the business number, when known.
    pub digits: Option<String>,
    pub target: GraphTarget,
    /// The settings a profile asks for (the base of `settings push`), when read from one.
    pub profile_inputs: Option<SettingsInputs>,
    /// Where the SIP password is kept (a profile's `{ file = … }` source).
    pub password_file: Option<PathBuf>,
    /// This gateway's SIP side (for `settings check`), from the profile.
    pub local: LocalSipArgs,
}

pub(crate) fn token_source(g: &GraphArgs) -> Option<TokenSource> {
    match (&g.token_file, &g.token_env) {
        (Some(p), _) => Some(TokenSource::File(p.clone())),
        (None, Some(e)) => Some(TokenSource::Env(e.clone())),
        (None, None) => None,
    }
}

pub(crate) fn retry_from(g: &GraphArgs, retries: u32) -> RetryPolicy {
    RetryPolicy {
        retries: g.retries.unwrap_or(retries),
        base: Duration::from_millis(g.retry_base_ms),
        max: Duration::from_secs(10),
    }
}

/// Resolves the number: from flags when `--phone-number-id` is given, else from profiles.
pub fn resolve(number: Option<&str>, g: &GraphArgs) -> Result<NumberContext, String> {
    let digits = number.map(business_digits).transpose()?;
    let Some(pnid) = g.phone_number_id.clone() else {
        return resolve_from_profiles(digits, g);
    };
    let token = token_source(g)
        .unwrap_or_else(|| TokenSource::Env("WHATSAPP_TOKEN".into()))
        .resolve()
        .map_err(|e| e.to_string())?;
    Ok(NumberContext {
        digits,
        target: GraphTarget {
            base_url: g
                .graph_url
                .clone()
                .unwrap_or_else(|| "https://graph.facebook.com".into()),
            api_version: g.api_version.clone().unwrap_or_else(|| "v23.0".into()),
            token,
            phone_number_id: pnid,
            timeout: Duration::from_secs(g.timeout_s.unwrap_or(10).max(1)),
            retry: retry_from(g, 2),
        },
        profile_inputs: None,
        password_file: None,
        local: LocalSipArgs::default(),
    })
}

fn resolve_from_profiles(digits: Option<String>, g: &GraphArgs) -> Result<NumberContext, String> {
    super::profile::resolve(digits, g)
}

fn context(number: Option<&str>, g: &GraphArgs) -> Result<(NumberContext, GraphClient), i32> {
    let ctx = resolve(number, g).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    let c = GraphClient::new(ctx.target.clone()).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    Ok((ctx, c))
}

fn default_password_file(digits: &str) -> PathBuf {
    PathBuf::from(format!("var/secrets/{digits}.sip"))
}

fn fail(e: &GraphError) -> i32 {
    eprintln!("error: {e}");
    1
}

/// Human summary of calling settings (never the password).
pub fn describe(c: &CallingSettings) -> String {
    let mut s = String::new();
    let d = |o: &Option<String>| o.clone().unwrap_or_else(|| "(not set)".into());
    s += &format!("calling.status:               {}\n", d(&c.status));
    s += &format!(
        "call_icon_visibility:         {}\n",
        d(&c.call_icon_visibility)
    );
    s += &format!(
        "callback_permission_status:   {}\n",
        d(&c.callback_permission_status)
    );
    s += &format!(
        "srtp_key_exchange_protocol:   {}{}\n",
        c.key_exchange(),
        if c.srtp_key_exchange_protocol.is_none() {
            " (default)"
        } else {
            ""
        }
    );
    let codecs = c
        .audio
        .as_ref()
        .and_then(|a| a.additional_codecs.clone())
        .unwrap_or_default();
    s += &format!(
        "audio.additional_codecs:      {}\n",
        if codecs.is_empty() {
            "(none; Opus only)".to_string()
        } else {
            codecs.join(", ")
        }
    );
    match &c.sip {
        Some(sip) => {
            s += &format!("sip.status:                   {}\n", d(&sip.status));
            for srv in sip.servers.iter().flatten() {
                let params: Vec<String> = srv
                    .request_uri_user_params
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                s += &format!(
                    "sip.server:                   {}:{}{}{}\n",
                    srv.hostname,
                    srv.port.unwrap_or(5061),
                    if params.is_empty() {
                        String::new()
                    } else {
                        format!(" ;{}", params.join(";"))
                    },
                    if srv.sip_user_password.is_some() {
                        " (password returned)"
                    } else {
                        ""
                    }
                );
            }
        }
        None => s += "sip:                          (not set)\n",
    }
    match &c.call_hours {
        Some(ch) => {
            s += &format!(
                "call_hours:                   {} {}\n",
                d(&ch.status),
                d(&ch.timezone_id)
            );
            for w in ch.weekly_operating_hours.iter().flatten() {
                s += &format!("  {:<9} {}-{}\n", w.day_of_week, w.open_time, w.close_time);
            }
            for h in ch.holiday_schedule.iter().flatten() {
                s += &format!("  holiday {} {}-{}\n", h.date, h.start_time, h.end_time);
            }
        }
        None => s += "call_hours:                   (not set)\n",
    }
    s
}

pub async fn settings_pull(
    number: &str,
    g: &GraphArgs,
    password_file: Option<&Path>,
    show_password: bool,
    json: bool,
) -> i32 {
    let (ctx, c) = match context(Some(number), g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let digits = ctx.digits.clone().unwrap_or_default();
    let doc = match c.get_settings(true).await {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let Some(calling) = doc.calling else {
        eprintln!("error: Meta returned no calling settings for +{digits}");
        return 1;
    };
    let password = calling
        .sip_server()
        .and_then(|s| s.sip_user_password.clone());
    if json {
        let shown = if show_password {
            calling.clone()
        } else {
            calling.without_secrets()
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "calling": shown }))
                .unwrap_or_default()
        );
    } else {
        println!("+{digits} (phone_number_id {})", c.target().phone_number_id);
        print!("{}", describe(&calling));
    }
    let path = password_file
        .map(Path::to_path_buf)
        .or(ctx.password_file.clone())
        .unwrap_or_else(|| default_password_file(&digits));
    match password {
        Some(pw) => {
            if let Err(e) = settings::store_password(&path, &pw) {
                eprintln!(
                    "error: cannot store SIP password in {}: {e}",
                    path.display()
                );
                return 1;
            }
            eprintln!("SIP password stored in {} (mode 0600)", path.display());
            if show_password && !json {
                println!("sip_user_password:            {pw}");
            }
            0
        }
        None => {
            eprintln!(
                "warning: Meta returned no sip_user_password (no SIP server configured?); nothing stored"
            );
            0
        }
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the `calling` body: the profile's settings (or a `--body` file), then flags.
pub fn build_body(
    profile: Option<&SettingsInputs>,
    b: &SettingsBodyArgs,
) -> Result<CallingSettings, String> {
    let mut base = match &b.body {
        Some(p) => {
            let v = read_json(p)?;
            let v = v.get("calling").cloned().unwrap_or(v);
            serde_json::from_value::<CallingSettings>(v)
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => profile.map(SettingsInputs::build).unwrap_or_default(),
    };
    let call_hours = match &b.call_hours {
        Some(p) => Some(
            serde_json::from_value::<CallHours>(read_json(p)?)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let mut params = BTreeMap::new();
    for kv in &b.sip_params {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--sip-param {kv:?} is not KEY=VALUE"))?;
        params.insert(k.to_string(), v.to_string());
    }
    let codecs = if b.no_codecs {
        Some(Vec::new())
    } else if b.codecs.is_empty() {
        None
    } else {
        Some(b.codecs.iter().map(|c| c.to_ascii_uppercase()).collect())
    };
    let flags = SettingsInputs {
        status: b.status.clone(),
        call_icon_visibility: b.call_icon_visibility.clone(),
        callback_permission_status: b.callback_permission_status.clone(),
        call_hours,
        sip_status: b.sip_status.clone(),
        sip_hostname: b.sip_host.clone(),
        sip_port: b.sip_port,
        request_uri_user_params: params,
        srtp_key_exchange_protocol: b.srtp_key_exchange.as_ref().map(|s| s.to_ascii_uppercase()),
        additional_codecs: codecs,
    }
    .build();
    macro_rules! over {
        ($($f:ident),*) => { $( if flags.$f.is_some() { base.$f = flags.$f.clone(); } )* };
    }
    over!(
        status,
        call_icon_visibility,
        callback_permission_status,
        call_hours,
        srtp_key_exchange_protocol,
        audio
    );
    if let Some(sip) = flags.sip {
        let cur = base.sip.get_or_insert_with(Default::default);
        if b.sip_status.is_some() || cur.status.is_none() {
            cur.status = sip.status;
        }
        if sip.servers.is_some() {
            cur.servers = sip.servers;
        }
    }
    Ok(base)
}

pub async fn settings_push(
    number: &str,
    g: &GraphArgs,
    b: &SettingsBodyArgs,
    dry_run: bool,
    no_validate: bool,
) -> i32 {
    let (ctx, c) = match context(Some(number), g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let body = match build_body(ctx.profile_inputs.as_ref(), b) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if body == CallingSettings::default() {
        eprintln!(
            "error: nothing to push: give --body or settings flags (--sip-host, --status, …)"
        );
        return 2;
    }
    if !no_validate {
        let issues = settings::validate(&body, jiff::Timestamp::now());
        if !issues.is_empty() {
            eprintln!("refused locally (not sent to Meta):");
            for i in &issues {
                eprintln!("  {i}");
            }
            return 1;
        }
    }
    let current = match c.get_settings(false).await {
        Ok(d) => d.calling.unwrap_or_default(),
        Err(e) => return fail(&e),
    };
    let changes = settings::diff(&current, &body);
    if changes.is_empty() {
        println!("no changes against Meta's current settings");
    } else {
        println!("changes against Meta's current settings:");
        for ch in &changes {
            println!("  {ch}");
        }
    }
    if dry_run {
        println!(
            "dry run: would POST /{}/settings\n{}",
            c.target().phone_number_id,
            serde_json::to_string_pretty(&serde_json::json!({ "calling": body }))
                .unwrap_or_default()
        );
        return 0;
    }
    match c.post_settings(&body).await {
        Ok(()) => {
            println!("pushed: Meta accepted the settings");
            0
        }
        Err(e) => {
            eprintln!("Meta refused the settings:");
            fail(&e)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Findings(Vec<(Level, String, Option<String>)>);

impl Findings {
    fn add(&mut self, l: Level, what: impl Into<String>, fix: Option<String>) {
        self.0.push((l, what.into(), fix));
    }
}

/// True when `cert` (PEM chain, first certificate) is valid for `host`.
pub fn cert_valid_for(cert: &Path, host: &str) -> Result<bool, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let first = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .next()
        .ok_or_else(|| format!("{}: no CERTIFICATE in file", cert.display()))?
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let ee = webpki::EndEntityCert::try_from(&first)
        .map_err(|e| format!("{}: not a usable certificate: {e}", cert.display()))?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid server name: {e}"))?;
    Ok(ee.verify_is_valid_for_subject_name(&name).is_ok())
}

pub async fn settings_check(number: Option<&str>, g: &GraphArgs, flags: &LocalSipArgs) -> i32 {
    let (ctx, c) = match context(number, g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let digits = ctx.digits.clone();
    // flags override what the profile says
    let p = ctx.local.clone();
    let local = LocalSipArgs {
        public_host: flags.public_host.clone().or(p.public_host),
        public_port: flags.public_port.or(p.public_port),
        listen: flags.listen.or(p.listen),
        cert: flags.cert.clone().or(p.cert),
        media: flags.media.clone().or(p.media),
        password_file: flags
            .password_file
            .clone()
            .or(ctx.password_file.clone())
            .or(p.password_file)
            .or_else(|| digits.as_deref().map(default_password_file)),
    };
    let local = &local;
    let shown = digits
        .as_deref()
        .map(|d| format!("+{d}"))
        .unwrap_or_else(|| "<number>".into());
    let mut f = Findings(Vec::new());
    let push = format!("whatsip settings push {shown}");
    match c.get_settings(true).await {
        Err(e) => f.add(
            Level::Fail,
            format!("cannot read the settings from Graph: {e}"),
            Some("check --graph-url, the token and --phone-number-id".into()),
        ),
        Ok(doc) => {
            let calling = doc.calling.unwrap_or_default();
            check_calling(&mut f, &calling, local, &shown, &push);
        }
    }
    let mut fails = 0;
    for (l, what, fix) in &f.0 {
        let tag = match l {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                fails += 1;
                "FAIL"
            }
        };
        println!("[{tag}] {what}");
        if let Some(fix) = fix {
            println!("       fix: {fix}");
        }
    }
    if fails > 0 {
        println!("{fails} problem(s) can stop Meta's INVITEs from reaching this gateway");
        1
    } else {
        println!("no problem found");
        0
    }
}

fn check_calling(
    f: &mut Findings,
    calling: &CallingSettings,
    local: &LocalSipArgs,
    shown: &str,
    push: &str,
) {
    if calling.calling_enabled() {
        f.add(Level::Ok, "calling is ENABLED", None);
    } else {
        f.add(
            Level::Fail,
            format!(
                "calling status is {}",
                calling.status.as_deref().unwrap_or("not set")
            ),
            Some(format!("{push} --status ENABLED")),
        );
    }
    if calling.sip_enabled() {
        f.add(Level::Ok, "SIP is ENABLED", None);
    } else {
        f.add(
            Level::Fail,
            "SIP is not enabled: Meta sends no INVITEs (calls go to Graph webhooks)",
            Some(format!(
                "{push} --sip-status ENABLED --sip-host <public host>"
            )),
        );
    }
    let Some(server) = calling.sip_server() else {
        f.add(
            Level::Fail,
            "no SIP server configured at Meta",
            Some(format!(
                "{push} --sip-host {}",
                local.public_host.as_deref().unwrap_or("<public host>")
            )),
        );
        return;
    };
    let meta_port = server.port.unwrap_or(5061);
    let host = server.hostname.as_str();
    match &local.public_host {
        Some(ours) if !ours.eq_ignore_ascii_case(host) => f.add(
            Level::Fail,
            format!("Meta sends INVITEs to {host}, but this gateway is {ours}"),
            Some(format!(
                "{push} --sip-host {ours} --sip-port {}",
                local.public_port.unwrap_or(5061)
            )),
        ),
        Some(_) => f.add(Level::Ok, format!("Meta's SIP hostname is {host}"), None),
        None => f.add(
            Level::Warn,
            format!("Meta's SIP hostname is {host}; no --public-host given to compare"),
            None,
        ),
    }
    if meta_port != local.public_port.unwrap_or(5061) {
        f.add(
            Level::Fail,
            format!(
                "Meta connects to port {meta_port}, but this gateway's public port is {}",
                local.public_port.unwrap_or(5061)
            ),
            Some(format!(
                "{push} --sip-port {}",
                local.public_port.unwrap_or(5061)
            )),
        );
    } else {
        f.add(Level::Ok, format!("Meta's SIP port is {meta_port}"), None);
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        f.add(
            Level::Warn,
            format!("Meta's SIP hostname {host} is an IP address; Meta validates the certificate against it"),
            Some("use a DNS name with a public certificate".into()),
        );
    }
    if let Some(listen) = local.listen {
        if listen.port() != meta_port {
            f.add(
                Level::Warn,
                format!(
                    "TLS listener is on port {} but Meta connects to {meta_port}: needs port forwarding",
                    listen.port()
                ),
                Some("listen on the port Meta dials, or forward it".into()),
            );
        } else {
            f.add(
                Level::Ok,
                format!("TLS listener {listen} matches port {meta_port}"),
                None,
            );
        }
        let host_is_loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if listen.ip().is_loopback() && !host_is_loopback {
            f.add(
                Level::Warn,
                format!("TLS listener {listen} is loopback-only; Meta cannot reach it"),
                Some("listen on a public address (or 0.0.0.0) behind your firewall".into()),
            );
        }
    }
    match &local.cert {
        Some(cert) => match cert_valid_for(cert, host) {
            Ok(true) => f.add(
                Level::Ok,
                format!("certificate {} is valid for {host}", cert.display()),
                None,
            ),
            Ok(false) => f.add(
                Level::Fail,
                format!(
                    "certificate {} is not valid for {host}: Meta's TLS handshake fails",
                    cert.display()
                ),
                Some(format!("use a certificate whose SAN includes {host}")),
            ),
            Err(e) => f.add(
                Level::Fail,
                format!("cannot read certificate: {e}"),
                Some("point --cert (tls.cert_chain) at a PEM chain".into()),
            ),
        },
        None => f.add(
            Level::Warn,
            "no certificate given (--cert): SAN not checked",
            None,
        ),
    }
    let meta_kx = calling.key_exchange();
    match local.media.as_deref().map(str::to_ascii_uppercase) {
        Some(ours) if ours != meta_kx => f.add(
            Level::Fail,
            format!("Meta uses {meta_kx} key exchange, this gateway's media mode is {ours}"),
            Some(format!("{push} --srtp-key-exchange {ours}")),
        ),
        Some(_) => f.add(Level::Ok, format!("key exchange {meta_kx} matches"), None),
        None => f.add(
            Level::Warn,
            format!("Meta uses {meta_kx} key exchange; no --media given to compare"),
            None,
        ),
    }
    let meta_pw = server.sip_user_password.as_deref();
    let Some(pw_path) = local.password_file.clone() else {
        f.add(
            Level::Warn,
            "no password file known: stored SIP password not checked",
            Some("give <number> or --password-file".into()),
        );
        return;
    };
    match (meta_pw, std::fs::read_to_string(&pw_path)) {
        (None, _) => f.add(
            Level::Fail,
            "Meta returned no SIP password for the server",
            Some(
                "re-add the SIP server (status DISABLED, servers [], then enable) and pull".into(),
            ),
        ),
        (Some(_), Err(_)) => f.add(
            Level::Fail,
            format!("no SIP password stored at {}", pw_path.display()),
            Some(format!("whatsip settings pull {shown}")),
        ),
        (Some(m), Ok(ours)) if ours.trim() != m => f.add(
            Level::Fail,
            format!("SIP password in {} differs from Meta's", pw_path.display()),
            Some(format!("whatsip settings pull {shown}")),
        ),
        (Some(_), Ok(_)) => {
            f.add(
                Level::Ok,
                format!("SIP password in {} matches Meta's", pw_path.display()),
                None,
            );
            use std::os::unix::fs::PermissionsExt;
            if let Ok(md) = std::fs::metadata(&pw_path)
                && md.permissions().mode() & 0o077 != 0
            {
                f.add(
                    Level::Warn,
                    format!("{} is readable by others", pw_path.display()),
                    Some(format!("chmod 600 {}", pw_path.display())),
                );
            }
        }
    }
}

fn print_permissions(user: &UserId, p: &CallPermissions) {
    println!("user:       {user}");
    println!("permission: {}", p.permission.status);
    if let Some(t) = p.permission.expiration_time {
        let when = jiff::Timestamp::from_second(t)
            .map(|ts| ts.to_string())
            .unwrap_or_else(|_| t.to_string());
        println!("expires:    {when} ({t})");
    }
    for a in &p.actions {
        println!(
            "action {}: {}",
            a.action_name,
            if a.can_perform_action {
                "allowed"
            } else {
                "NOT allowed"
            }
        );
        for l in &a.limits {
            let until = l
                .limit_expiration_time
                .map(|t| format!(" (limit until {t})"))
                .unwrap_or_default();
            println!(
                "  {:<6} {}/{} used{until}",
                l.time_period, l.current_usage, l.max_allowed
            );
        }
    }
}

pub async fn permissions_check(user: &str, number: Option<&str>, g: &GraphArgs, json: bool) -> i32 {
    let u = match UserId::parse(user) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let (_, c) = match context(number, g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match c.call_permissions(&u).await {
        Ok(p) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
            } else {
                print_permissions(&u, &p);
                match p.check_start_call(unix_now()) {
                    Ok(()) => println!("a business-initiated call may start now"),
                    Err(e) => {
                        let a = e.sip_answer();
                        println!(
                            "a call now would be refused: {e}\n  SIP: {} {} / Warning: {}",
                            a.status, a.reason, a.warning
                        );
                    }
                }
            }
            0
        }
        Err(e) => fail(&e),
    }
}

pub async fn permissions_request(
    user: &str,
    number: Option<&str>,
    g: &GraphArgs,
    body: &str,
) -> i32 {
    let u = match UserId::parse(user) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let (_, c) = match context(number, g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // Honour the per-pair limits before sending: Meta counts the request even if refused.
    match c.call_permissions(&u).await {
        Ok(p) => {
            if let Err(e) = p.check_send_request(unix_now()) {
                eprintln!("not sent: {e}");
                return 1;
            }
        }
        Err(e) => return fail(&e),
    }
    match c.send_permission_request(&u, body).await {
        Ok(id) => {
            println!("call permission request sent to {u}: {id}");
            0
        }
        Err(e) => fail(&e),
    }
}
