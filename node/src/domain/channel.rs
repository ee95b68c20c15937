//! Per-project channel settings (SPEC PRJ-3): which channels are enabled, their providers'
//! addresses and credentials, SMS origination identities and the rule that picks one
//! (SPEC CHN-4).
//!
//! Secrets (passwords, API keys, private keys) are stored here and never answered by the
//! API; an update that leaves a secret empty keeps the stored one ([`ChannelConfig::keep_secrets_of`]).

use serde::{Deserialize, Serialize};

use super::FieldViolation;
use super::endpoint::{is_country_code, is_e164, is_email};
use super::violation::join;

/// Default SMS and voice rate limit per project (SPEC CHN-2).
pub const DEFAULT_RATE_PER_SECOND: u32 = 20;
/// Highest rate a project may configure; beyond it a provider account needs its own cluster.
pub const MAX_RATE_PER_SECOND: u32 = 10_000;

/// A channel of a project, as named by the API (`EMAIL`, `SMS`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChannelKind {
    /// Email over SMTP.
    Email,
    /// SMS through an HTTP provider API.
    Sms,
    /// Voice calls through an HTTP provider API.
    Voice,
    /// Apple push.
    Apns,
    /// Firebase Cloud Messaging push.
    Fcm,
    /// A signed webhook of the customer.
    Custom,
    /// Messages kept per endpoint and fetched by the app.
    InApp,
}

impl ChannelKind {
    /// Every kind, in the order the API lists them.
    pub const ALL: [ChannelKind; 7] = [
        Self::Email,
        Self::Sms,
        Self::Voice,
        Self::Apns,
        Self::Fcm,
        Self::Custom,
        Self::InApp,
    ];

    /// The API name, e.g. `IN_APP`; also the storage key field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Sms => "SMS",
            Self::Voice => "VOICE",
            Self::Apns => "APNS",
            Self::Fcm => "FCM",
            Self::Custom => "CUSTOM",
            Self::InApp => "IN_APP",
        }
    }

    /// Parses an API name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpTls {
    /// Plain text (a relay on a trusted network, or a test server).
    None,
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

impl SmtpTls {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::StartTls => "STARTTLS",
            Self::Implicit => "IMPLICIT",
        }
    }

    /// Parses an API name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::None, Self::StartTls, Self::Implicit]
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(name))
    }
}

/// Email over SMTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailChannel {
    /// Whether sends may use the channel.
    pub enabled: bool,
    /// The SMTP server's host name or IP address.
    pub host: String,
    /// The SMTP server's port.
    pub port: u16,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// Login; empty means the server does not ask for authentication.
    pub username: String,
    /// Secret: never answered by the API.
    pub password: String,
    /// The sender's address, e.g. `news@shop.example`.
    pub from_address: String,
    /// The sender's display name; may be empty.
    pub from_name: String,
    /// A PEM certificate trusted as a root besides the public ones: only tests set it (to
    /// trust a self-signed test server); the API neither reads nor answers it.
    #[serde(default)]
    pub test_only_trusted_root_pem: Option<String>,
}

/// Kinds of SMS and voice origination identities (SPEC CHN-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OriginationKind {
    /// A 5–6 digit number for high-volume SMS in one country.
    ShortCode,
    /// A registered 10-digit long code for application-to-person SMS (US).
    TenDlc,
    /// A toll-free number.
    TollFree,
    /// An ordinary phone number: SMS outside the US, and voice.
    LongCode,
    /// An alphanumeric sender name, where the country allows one.
    SenderId,
}

impl OriginationKind {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShortCode => "SHORT_CODE",
            Self::TenDlc => "TEN_DLC",
            Self::TollFree => "TOLL_FREE",
            Self::LongCode => "LONG_CODE",
            Self::SenderId => "SENDER_ID",
        }
    }

    /// Parses an API name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::ShortCode,
            Self::TenDlc,
            Self::TollFree,
            Self::LongCode,
            Self::SenderId,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// A number or sender name messages are sent from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginationIdentity {
    /// What kind of identity it is.
    pub kind: OriginationKind,
    /// The number (E.164, or digits for a short code) or the sender name.
    pub value: String,
    /// ISO 3166-1 alpha-2 country it may send to; empty: any country.
    pub country: String,
}

/// SMS or voice through an HTTP provider API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneChannel {
    /// Whether sends may use the channel.
    pub enabled: bool,
    /// The provider API's base URL (configurable so tests point it at a local server).
    pub base_url: String,
    /// The account at the provider.
    pub account: String,
    /// Secret: never answered by the API.
    pub api_key: String,
    /// Numbers and sender names to send from.
    pub origination_identities: Vec<OriginationIdentity>,
    /// Messages per second for the project, cluster-wide (SPEC CHN-2).
    pub rate_per_second: u32,
}

impl Default for PhoneChannel {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: String::new(),
            account: String::new(),
            api_key: String::new(),
            origination_identities: Vec::new(),
            rate_per_second: DEFAULT_RATE_PER_SECOND,
        }
    }
}

/// SMS settings.
pub type SmsChannel = PhoneChannel;
/// Voice settings: the same shape as SMS.
pub type VoiceChannel = PhoneChannel;

/// Apple push through the APNs HTTP/2 API, authenticated with a token key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApnsChannel {
    /// Whether sends may use the channel.
    pub enabled: bool,
    /// The API's base URL; empty: Apple's (production or sandbox).
    pub base_url: String,
    /// The Apple developer team id (10 characters).
    pub team_id: String,
    /// The id of the token signing key (10 characters).
    pub key_id: String,
    /// Secret: the `.p8` signing key, PEM; never answered by the API.
    pub private_key: String,
    /// The app's bundle id, the `apns-topic`.
    pub bundle_id: String,
    /// Whether to use Apple's sandbox environment.
    pub sandbox: bool,
}

/// Android and web push through the FCM HTTP v1 API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmChannel {
    /// Whether sends may use the channel.
    pub enabled: bool,
    /// The API's base URL; empty: Google's.
    pub base_url: String,
    /// The Firebase project id.
    pub project_id: String,
    /// Secret: the service account key file, JSON; never answered by the API.
    pub service_account_json: String,
}

/// A customer's webhook, signed with HMAC-SHA256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomChannel {
    /// Whether sends may use the channel.
    pub enabled: bool,
    /// Where messages are posted.
    pub url: String,
    /// Secret: the signing key; never answered by the API.
    pub hmac_secret: String,
}

/// In-app messages, kept per endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InAppChannel {
    /// Whether sends may use the channel.
    pub enabled: bool,
}

/// One channel's settings: what a write stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelConfig {
    /// Email.
    Email(EmailChannel),
    /// SMS.
    Sms(SmsChannel),
    /// Voice.
    Voice(VoiceChannel),
    /// APNs.
    Apns(ApnsChannel),
    /// FCM.
    Fcm(FcmChannel),
    /// Custom webhook.
    Custom(CustomChannel),
    /// In-app.
    InApp(InAppChannel),
}

impl ChannelConfig {
    /// Which channel this configures.
    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Email(_) => ChannelKind::Email,
            Self::Sms(_) => ChannelKind::Sms,
            Self::Voice(_) => ChannelKind::Voice,
            Self::Apns(_) => ChannelKind::Apns,
            Self::Fcm(_) => ChannelKind::Fcm,
            Self::Custom(_) => ChannelKind::Custom,
            Self::InApp(_) => ChannelKind::InApp,
        }
    }

    /// Takes each secret that this update leaves empty from `stored`, so clients can change
    /// a channel without sending its secrets again.
    pub fn keep_secrets_of(&mut self, stored: &ChannelConfig) {
        fn keep(new: &mut String, old: &str) {
            if new.is_empty() {
                *new = old.to_string();
            }
        }
        match (self, stored) {
            (Self::Email(new), Self::Email(old)) => keep(&mut new.password, &old.password),
            (Self::Sms(new), Self::Sms(old)) | (Self::Voice(new), Self::Voice(old)) => {
                keep(&mut new.api_key, &old.api_key)
            }
            (Self::Apns(new), Self::Apns(old)) => keep(&mut new.private_key, &old.private_key),
            (Self::Fcm(new), Self::Fcm(old)) => {
                keep(&mut new.service_account_json, &old.service_account_json)
            }
            (Self::Custom(new), Self::Custom(old)) => keep(&mut new.hmac_secret, &old.hmac_secret),
            _ => {}
        }
    }
}

/// Every channel of a project; `None` is a channel never configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSettings {
    /// Email.
    pub email: Option<EmailChannel>,
    /// SMS.
    pub sms: Option<SmsChannel>,
    /// Voice.
    pub voice: Option<VoiceChannel>,
    /// APNs.
    pub apns: Option<ApnsChannel>,
    /// FCM.
    pub fcm: Option<FcmChannel>,
    /// Custom webhook.
    pub custom: Option<CustomChannel>,
    /// In-app.
    pub in_app: Option<InAppChannel>,
}

impl ChannelSettings {
    /// Places one stored channel.
    pub fn insert(&mut self, config: ChannelConfig) {
        match config {
            ChannelConfig::Email(c) => self.email = Some(c),
            ChannelConfig::Sms(c) => self.sms = Some(c),
            ChannelConfig::Voice(c) => self.voice = Some(c),
            ChannelConfig::Apns(c) => self.apns = Some(c),
            ChannelConfig::Fcm(c) => self.fcm = Some(c),
            ChannelConfig::Custom(c) => self.custom = Some(c),
            ChannelConfig::InApp(c) => self.in_app = Some(c),
        }
    }

    /// The email channel when it is configured and enabled.
    pub fn enabled_email(&self) -> Option<&EmailChannel> {
        self.email.as_ref().filter(|email| email.enabled)
    }
}

/// A port from the API's 32-bit field: 1..=65535.
pub fn parse_port(field: &str, port: u32, violations: &mut Vec<FieldViolation>) -> u16 {
    match u16::try_from(port) {
        Ok(port) if port > 0 => port,
        _ => {
            violations.push(FieldViolation::new(
                field,
                format!("{port} is not a port (1 to 65535)"),
            ));
            0
        }
    }
}

/// An SMTP TLS mode from its API name; empty means STARTTLS.
pub fn parse_tls(field: &str, name: &str, violations: &mut Vec<FieldViolation>) -> SmtpTls {
    if name.is_empty() {
        return SmtpTls::StartTls;
    }
    SmtpTls::parse(name).unwrap_or_else(|| {
        violations.push(FieldViolation::new(
            field,
            format!("{name:?} is not NONE, STARTTLS or IMPLICIT"),
        ));
        SmtpTls::StartTls
    })
}

/// An origination kind from its API name.
pub fn parse_origination_kind(
    field: &str,
    name: &str,
    violations: &mut Vec<FieldViolation>,
) -> OriginationKind {
    OriginationKind::parse(name).unwrap_or_else(|| {
        violations.push(FieldViolation::new(
            field,
            format!("{name:?} is not SHORT_CODE, TEN_DLC, TOLL_FREE, LONG_CODE or SENDER_ID"),
        ));
        OriginationKind::LongCode
    })
}

/// Whether `host` is a host name or an IP address: no spaces, no scheme, no port.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && (host.parse::<std::net::IpAddr>().is_ok() || !host.contains(':'))
}

/// Whether `url` is an absolute `http` or `https` URL with a host.
pub fn is_http_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if port.parse::<u16>().is_err() {
                return false;
            }
            host
        }
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !url.chars().any(|c| c.is_whitespace() || c.is_control()) && is_host(host)
}

fn check_url(field: &str, url: &str, required: bool, violations: &mut Vec<FieldViolation>) {
    if url.is_empty() {
        if required {
            violations.push(FieldViolation::new(field, "is required"));
        }
    } else if !is_http_url(url) {
        violations.push(FieldViolation::new(
            field,
            format!("{url:?} is not an http or https URL"),
        ));
    }
}

fn check_length(field: &str, value: &str, max: usize, violations: &mut Vec<FieldViolation>) {
    if value.chars().count() > max {
        violations.push(FieldViolation::new(
            field,
            format!("is longer than {max} characters"),
        ));
    }
}

/// Checks an email channel; `parent` prefixes every field path.
pub fn validate_email(parent: &str, email: &EmailChannel) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if !is_host(&email.host) {
        violations.push(FieldViolation::new(
            join(parent, "host"),
            format!("{:?} is not a host name or IP address", email.host),
        ));
    }
    if email.port == 0 {
        violations.push(FieldViolation::new(
            join(parent, "port"),
            "0 is not a port (1 to 65535)",
        ));
    }
    if !is_email(&email.from_address) {
        violations.push(FieldViolation::new(
            join(parent, "from_address"),
            format!("{:?} is not an email address", email.from_address),
        ));
    }
    if email.from_name.chars().any(|c| c.is_control()) {
        violations.push(FieldViolation::new(
            join(parent, "from_name"),
            "contains a control character",
        ));
    }
    check_length(
        &join(parent, "from_name"),
        &email.from_name,
        200,
        &mut violations,
    );
    check_length(
        &join(parent, "username"),
        &email.username,
        256,
        &mut violations,
    );
    check_length(
        &join(parent, "password"),
        &email.password,
        1024,
        &mut violations,
    );
    violations
}

/// Countries where carriers refuse alphanumeric sender ids (published carrier rules; SMS
/// there must come from a number).
const SENDER_ID_REFUSED: &[&str] = &[
    "AR", "BR", "CA", "CL", "CN", "CO", "CR", "DO", "EC", "GT", "KR", "MX", "PR", "US", "VN",
];

/// Whether messages to `country` may come from an alphanumeric sender id.
pub fn sender_id_allowed(country: &str) -> bool {
    !SENDER_ID_REFUSED.contains(&country.to_ascii_uppercase().as_str())
}

fn validate_identity(field: &str, identity: &OriginationIdentity, out: &mut Vec<FieldViolation>) {
    let value = &identity.value;
    let ok = match identity.kind {
        OriginationKind::ShortCode => {
            (3..=8).contains(&value.len()) && value.chars().all(|c| c.is_ascii_digit())
        }
        OriginationKind::TenDlc | OriginationKind::TollFree | OriginationKind::LongCode => {
            is_e164(value)
        }
        OriginationKind::SenderId => {
            (1..=11).contains(&value.len())
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
                && value.chars().any(|c| c.is_ascii_alphabetic())
        }
    };
    if !ok {
        let expected = match identity.kind {
            OriginationKind::ShortCode => "3 to 8 digits",
            OriginationKind::SenderId => "1 to 11 letters, digits or spaces, with a letter",
            _ => "an E.164 number",
        };
        out.push(FieldViolation::new(
            join(field, "value"),
            format!(
                "{value:?} is not a valid {}: expected {expected}",
                identity.kind.as_str()
            ),
        ));
    }
    if !identity.country.is_empty() && !is_country_code(&identity.country) {
        out.push(FieldViolation::new(
            join(field, "country"),
            format!(
                "{:?} is not an upper-case ISO 3166-1 alpha-2 code",
                identity.country
            ),
        ));
    }
    if identity.kind == OriginationKind::SenderId
        && !identity.country.is_empty()
        && !sender_id_allowed(&identity.country)
    {
        out.push(FieldViolation::new(
            join(field, "country"),
            format!("{} does not allow sender ids", identity.country),
        ));
    }
}

/// Checks an SMS or voice channel; `parent` prefixes every field path.
pub fn validate_phone(parent: &str, phone: &PhoneChannel) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    check_url(
        &join(parent, "base_url"),
        &phone.base_url,
        true,
        &mut violations,
    );
    check_length(
        &join(parent, "account"),
        &phone.account,
        256,
        &mut violations,
    );
    check_length(
        &join(parent, "api_key"),
        &phone.api_key,
        4096,
        &mut violations,
    );
    if !(1..=MAX_RATE_PER_SECOND).contains(&phone.rate_per_second) {
        violations.push(FieldViolation::new(
            join(parent, "rate_per_second"),
            format!(
                "{} is not between 1 and {MAX_RATE_PER_SECOND}",
                phone.rate_per_second
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, identity) in phone.origination_identities.iter().enumerate() {
        let field = join(parent, &format!("origination_identities[{i}]"));
        validate_identity(&field, identity, &mut violations);
        if !seen.insert(identity.value.as_str()) {
            violations.push(FieldViolation::new(
                join(&field, "value"),
                format!("{:?} appears twice", identity.value),
            ));
        }
    }
    violations
}

/// Checks an APNs channel; `parent` prefixes every field path.
pub fn validate_apns(parent: &str, apns: &ApnsChannel) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    check_url(
        &join(parent, "base_url"),
        &apns.base_url,
        false,
        &mut violations,
    );
    for (name, value) in [("team_id", &apns.team_id), ("key_id", &apns.key_id)] {
        if value.len() != 10 || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            violations.push(FieldViolation::new(
                join(parent, name),
                format!("{value:?} is not 10 letters or digits"),
            ));
        }
    }
    if apns.bundle_id.is_empty()
        || !apns
            .bundle_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        violations.push(FieldViolation::new(
            join(parent, "bundle_id"),
            format!("{:?} is not a bundle id", apns.bundle_id),
        ));
    }
    if !apns.private_key.is_empty() && !apns.private_key.contains("-----BEGIN PRIVATE KEY-----") {
        violations.push(FieldViolation::new(
            join(parent, "private_key"),
            "is not a PEM private key (-----BEGIN PRIVATE KEY-----)",
        ));
    }
    violations
}

/// Checks an FCM channel; `parent` prefixes every field path.
pub fn validate_fcm(parent: &str, fcm: &FcmChannel) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    check_url(
        &join(parent, "base_url"),
        &fcm.base_url,
        false,
        &mut violations,
    );
    if fcm.project_id.is_empty()
        || !fcm
            .project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        violations.push(FieldViolation::new(
            join(parent, "project_id"),
            format!("{:?} is not a Firebase project id", fcm.project_id),
        ));
    }
    if !fcm.service_account_json.is_empty()
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
            &fcm.service_account_json,
        )
        .is_err()
    {
        violations.push(FieldViolation::new(
            join(parent, "service_account_json"),
            "is not a JSON object",
        ));
    }
    violations
}

/// Checks a custom webhook channel; `parent` prefixes every field path.
pub fn validate_custom(parent: &str, custom: &CustomChannel) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    check_url(&join(parent, "url"), &custom.url, true, &mut violations);
    check_length(
        &join(parent, "hmac_secret"),
        &custom.hmac_secret,
        4096,
        &mut violations,
    );
    violations
}

/// Checks any channel; `parent` prefixes every field path.
pub fn validate_channel(parent: &str, config: &ChannelConfig) -> Vec<FieldViolation> {
    match config {
        ChannelConfig::Email(c) => validate_email(parent, c),
        ChannelConfig::Sms(c) | ChannelConfig::Voice(c) => validate_phone(parent, c),
        ChannelConfig::Apns(c) => validate_apns(parent, c),
        ChannelConfig::Fcm(c) => validate_fcm(parent, c),
        ChannelConfig::Custom(c) => validate_custom(parent, c),
        ChannelConfig::InApp(_) => Vec::new(),
    }
}

/// What an origination identity is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginationUse {
    /// A text message.
    Sms,
    /// A call.
    Voice,
}

/// Whether `identity` can send `usage` to `country` (ISO code; empty: unknown).
fn usable(identity: &OriginationIdentity, usage: OriginationUse, country: &str) -> bool {
    let country_fits = identity.country.is_empty()
        || country.is_empty()
        || identity.country.eq_ignore_ascii_case(country);
    let kind_fits = match (usage, identity.kind) {
        // Calls come from phone numbers only.
        (OriginationUse::Voice, kind) => {
            !matches!(kind, OriginationKind::ShortCode | OriginationKind::SenderId)
        }
        // US carriers take application SMS from long codes only once registered as 10DLC.
        (OriginationUse::Sms, OriginationKind::LongCode) => {
            !country.eq_ignore_ascii_case("US") && !identity.country.eq_ignore_ascii_case("US")
        }
        (OriginationUse::Sms, OriginationKind::SenderId) => {
            !country.is_empty() && sender_id_allowed(country)
        }
        (OriginationUse::Sms, _) => true,
    };
    country_fits && kind_fits
}

/// Picks the identity a message is sent from (SPEC CHN-4): the one the sender named when it
/// is configured and can reach `country` (None otherwise: never a silent substitute);
/// else, for SMS, a short code, then 10DLC, then toll-free, then a sender id where the
/// country allows one, then a long code outside the US; for voice, a long code, then 10DLC,
/// then toll-free. Among identities of one kind, the first configured wins.
pub fn choose_origination<'a>(
    identities: &'a [OriginationIdentity],
    requested: Option<&str>,
    country: &str,
    usage: OriginationUse,
) -> Option<&'a OriginationIdentity> {
    if let Some(requested) = requested.filter(|r| !r.is_empty()) {
        return identities
            .iter()
            .find(|identity| identity.value == requested)
            .filter(|identity| usable(identity, usage, country));
    }
    let preference: &[OriginationKind] = match usage {
        OriginationUse::Sms => &[
            OriginationKind::ShortCode,
            OriginationKind::TenDlc,
            OriginationKind::TollFree,
            OriginationKind::SenderId,
            OriginationKind::LongCode,
        ],
        OriginationUse::Voice => &[
            OriginationKind::LongCode,
            OriginationKind::TenDlc,
            OriginationKind::TollFree,
        ],
    };
    preference.iter().find_map(|kind| {
        identities
            .iter()
            .find(|identity| identity.kind == *kind && usable(identity, usage, country))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(kind: OriginationKind, value: &str, country: &str) -> OriginationIdentity {
        OriginationIdentity {
            kind,
            value: value.to_string(),
            country: country.to_string(),
        }
    }

    fn all_kinds() -> Vec<OriginationIdentity> {
        vec![
            identity(OriginationKind::LongCode, "+15550000001", "US"),
            identity(OriginationKind::SenderId, "Shop", ""),
            identity(OriginationKind::TollFree, "+18005550100", "US"),
            identity(OriginationKind::TenDlc, "+15550000002", "US"),
            identity(OriginationKind::ShortCode, "12345", "US"),
        ]
    }

    /// SMS prefers a short code, then 10DLC, then toll-free, whatever the configured order.
    #[test]
    fn sms_prefers_short_code_then_ten_dlc_then_toll_free() {
        let mut identities = all_kinds();
        let pick = |ids: &[OriginationIdentity]| {
            choose_origination(ids, None, "US", OriginationUse::Sms).map(|i| i.value.clone())
        };
        assert_eq!(pick(&identities).as_deref(), Some("12345"));
        identities.retain(|i| i.kind != OriginationKind::ShortCode);
        assert_eq!(pick(&identities).as_deref(), Some("+15550000002"));
        identities.retain(|i| i.kind != OriginationKind::TenDlc);
        assert_eq!(pick(&identities).as_deref(), Some("+18005550100"));
        identities.retain(|i| i.kind != OriginationKind::TollFree);
        // A US long code does not send SMS, and the US refuses sender ids.
        assert_eq!(pick(&identities), None);
    }

    /// A named identity is used when configured, even if another kind ranks higher; a name
    /// that is not configured gives nothing rather than a different sender.
    #[test]
    fn a_named_identity_wins_and_an_unknown_name_is_not_replaced() {
        let identities = all_kinds();
        let chosen =
            choose_origination(&identities, Some("+18005550100"), "US", OriginationUse::Sms);
        assert_eq!(chosen.map(|i| i.kind), Some(OriginationKind::TollFree));
        assert_eq!(
            choose_origination(&identities, Some("+19999999999"), "US", OriginationUse::Sms),
            None
        );
        // Named, but a short code cannot place a call.
        assert_eq!(
            choose_origination(&identities, Some("12345"), "US", OriginationUse::Voice),
            None
        );
    }

    /// Calls come from phone numbers only, a long code first.
    #[test]
    fn voice_uses_long_codes_and_never_short_codes_or_sender_ids() {
        let identities = all_kinds();
        let chosen = choose_origination(&identities, None, "US", OriginationUse::Voice);
        assert_eq!(chosen.map(|i| i.value.as_str()), Some("+15550000001"));
        let only_texts = vec![
            identity(OriginationKind::ShortCode, "12345", ""),
            identity(OriginationKind::SenderId, "Shop", ""),
        ];
        assert_eq!(
            choose_origination(&only_texts, None, "GB", OriginationUse::Voice),
            None
        );
    }

    /// Sender ids are used where the country allows them and numbers elsewhere; identities
    /// tied to another country are skipped.
    #[test]
    fn sender_ids_only_where_allowed_and_country_bound_identities_stay_home() {
        let identities = all_kinds();
        // In Great Britain the US numbers do not apply; the sender id does.
        let chosen = choose_origination(&identities, None, "GB", OriginationUse::Sms);
        assert_eq!(chosen.map(|i| i.value.as_str()), Some("Shop"));
        let brazil = vec![
            identity(OriginationKind::SenderId, "Shop", ""),
            identity(OriginationKind::LongCode, "+5511900000000", "BR"),
        ];
        let chosen = choose_origination(&brazil, None, "BR", OriginationUse::Sms);
        assert_eq!(chosen.map(|i| i.kind), Some(OriginationKind::LongCode));
        assert!(!sender_id_allowed("us") && sender_id_allowed("DE"));
    }

    /// Every bad field of an email channel is reported at once, each with its path.
    #[test]
    fn email_validation_names_every_bad_field() {
        let email = EmailChannel {
            host: "smtp example.com".into(),
            port: 0,
            from_address: "not-an-address".into(),
            from_name: "A\u{7}".into(),
            ..EmailChannel::default()
        };
        let fields: Vec<String> = validate_email("channel", &email)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "channel.host",
                "channel.port",
                "channel.from_address",
                "channel.from_name"
            ]
        );
        let good = EmailChannel {
            host: "127.0.0.1".into(),
            port: 2525,
            from_address: "news@shop.example".into(),
            ..EmailChannel::default()
        };
        assert!(validate_email("channel", &good).is_empty());
        let mut violations = Vec::new();
        assert_eq!(parse_port("port", 70_000, &mut violations), 0);
        assert_eq!(
            parse_tls("tls", "tls13", &mut violations),
            SmtpTls::StartTls
        );
        assert_eq!(
            parse_tls("tls", "implicit", &mut violations),
            SmtpTls::Implicit
        );
        assert_eq!(violations.len(), 2, "{violations:?}");
    }

    /// SMS settings: URL, rate and each identity are checked, with list indexes in paths.
    #[test]
    fn phone_validation_checks_urls_rates_and_identities() {
        let phone = PhoneChannel {
            base_url: "ftp://sms.example".into(),
            rate_per_second: 0,
            origination_identities: vec![
                identity(OriginationKind::ShortCode, "12a", "US"),
                identity(OriginationKind::SenderId, "Shop", "US"),
                identity(OriginationKind::TollFree, "+18005550100", "usa"),
            ],
            ..PhoneChannel::default()
        };
        let fields: Vec<String> = validate_phone("channel", &phone)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "channel.base_url",
                "channel.rate_per_second",
                "channel.origination_identities[0].value",
                "channel.origination_identities[1].country",
                "channel.origination_identities[2].country",
            ]
        );
        assert!(is_http_url("http://127.0.0.1:8080/sms"));
        assert!(is_http_url("https://[::1]:443"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("https://a b"));
        assert!(!is_http_url("http://host:99999"));
    }

    /// An update without secrets keeps the stored ones; a new secret replaces them.
    #[test]
    fn updates_keep_stored_secrets_unless_given_new_ones() {
        let stored = ChannelConfig::Email(EmailChannel {
            password: "old".into(),
            ..EmailChannel::default()
        });
        let mut update = ChannelConfig::Email(EmailChannel::default());
        update.keep_secrets_of(&stored);
        assert!(matches!(&update, ChannelConfig::Email(e) if e.password == "old"));
        let mut update = ChannelConfig::Email(EmailChannel {
            password: "new".into(),
            ..EmailChannel::default()
        });
        update.keep_secrets_of(&stored);
        assert!(matches!(&update, ChannelConfig::Email(e) if e.password == "new"));
        assert_eq!(ChannelKind::parse("in_app"), Some(ChannelKind::InApp));
    }
}
