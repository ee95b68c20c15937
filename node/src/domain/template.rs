//! Message templates (SPEC TPL-1..3): the record, the rules a template must pass when it is
//! saved, and personalization of its parts for one endpoint.
//!
//! Parts are Handlebars with the variable names of Amazon Pinpoint message templates
//! (`{{User.UserAttributes.FirstName}}`, `{{Attributes.plan}}`, `{{Demographic.Platform}}`,
//! per-message substitutions such as `{{OrderId}}` at the top level). A campaign renders one
//! template for up to millions of endpoints, so a template is parsed once into a
//! [`CompiledTemplate`] and rendered many times, each time against a [`RenderContext`] built
//! once per endpoint.
//!
//! Handlebars renders a list as `[a, b]` and a missing value as nothing, which is not what
//! Pinpoint users expect, so every variable printed by a template (`{{x}}`, `{{{x}}}`) and
//! every value compared by `if`, `unless`, `eq`, … is routed at compile time through one
//! helper that takes a list's first value and a missing value's default.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use handlebars as hb;
use handlebars::template::{HelperTemplate, Parameter, Subexpression, TemplateElement};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::endpoint::{Endpoint, EndpointStatus, OptOut};
use super::violation::{FieldViolation, join};

/// Longest text part of a template, in bytes.
pub const MAX_PART_BYTES: usize = 100 * 1024;
/// Longest template name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Most default substitutions one template may have.
pub const MAX_DEFAULT_SUBSTITUTIONS: usize = 200;
/// Longest variable name of a default substitution, in characters.
pub const MAX_VARIABLE_NAME_CHARS: usize = 256;
/// Longest default substitution value, in bytes.
pub const MAX_DEFAULT_VALUE_BYTES: usize = 10 * 1024;
/// Most key-value pairs of a push template's data.
pub const MAX_PUSH_DATA_ENTRIES: usize = 100;

/// Push actions a device understands (Pinpoint's `Action`).
pub const PUSH_ACTIONS: [&str; 3] = ["OPEN_APP", "DEEP_LINK", "URL"];
/// In-app layouts an app understands (Pinpoint's `Layout`).
pub const IN_APP_LAYOUTS: [&str; 6] = [
    "BOTTOM_BANNER",
    "TOP_BANNER",
    "OVERLAYS",
    "MOBILE_FEED",
    "MIDDLE_BANNER",
    "CAROUSEL",
];

/// Top-level variables that come from the endpoint; a substitution of the same name is ignored.
pub const ENDPOINT_VARIABLES: [&str; 16] = [
    "Address",
    "ChannelType",
    "EndpointId",
    "Id",
    "CohortId",
    "CreationDate",
    "EffectiveDate",
    "EndpointStatus",
    "OptOut",
    "RequestId",
    "Attributes",
    "Metrics",
    "Demographic",
    "Location",
    "User",
    "ProjectId",
];

/// Helpers a template may call, with the fewest parameters each needs.
const HELPERS: [(&str, usize); 16] = [
    ("if", 1),
    ("unless", 1),
    ("each", 1),
    ("with", 1),
    ("lookup", 2),
    ("default", 2),
    ("eq", 2),
    ("ne", 2),
    ("gt", 2),
    ("gte", 2),
    ("lt", 2),
    ("lte", 2),
    ("and", 2),
    ("or", 2),
    ("not", 1),
    ("len", 1),
];

/// Helpers whose parameters are read as a variable's value: a list's first value, a missing
/// value's default. `each`, `with`, `lookup` and `len` see whole lists instead.
const VALUE_COMPARING_HELPERS: [&str; 11] = [
    "if", "unless", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or", "not",
];

/// Internal helper every printed variable is routed through; its name cannot be typed as a
/// helper call in a template because it is not in [`HELPERS`].
const VALUE_HELPER: &str = "herald-value";

/// Channel type a template is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TemplateType {
    /// Subject, HTML and text parts.
    Email,
    /// A text body.
    Sms,
    /// Title, body, action and data for APNs and FCM.
    Push,
    /// A script spoken by a voice.
    Voice,
    /// Content of an in-app message.
    InApp,
}

impl TemplateType {
    /// The name clients use, e.g. `EMAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Sms => "SMS",
            Self::Push => "PUSH",
            Self::Voice => "VOICE",
            Self::InApp => "INAPP",
        }
    }

    /// Parses a client name (`EMAIL`, `sms`, `IN_APP` as an alias of `INAPP`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "EMAIL" => Self::Email,
            "SMS" => Self::Sms,
            "PUSH" => Self::Push,
            "VOICE" => Self::Voice,
            "INAPP" | "IN_APP" => Self::InApp,
            _ => return None,
        })
    }
}

/// An email template; every part is a Handlebars template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailTemplate {
    /// Subject line, rendered without escaping.
    pub subject: String,
    /// HTML body; the only part whose values are HTML-escaped.
    pub html_part: String,
    /// Plain-text body, rendered without escaping.
    pub text_part: String,
}

/// An SMS template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsTemplate {
    /// Message text, a Handlebars template.
    pub body: String,
}

/// A push notification template for APNs and FCM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTemplate {
    /// Title, a Handlebars template.
    pub title: String,
    /// Body, a Handlebars template.
    pub body: String,
    /// What a tap does: one of [`PUSH_ACTIONS`] or empty (open the app); copied as is.
    pub action: String,
    /// Link for the `URL` and `DEEP_LINK` actions, a Handlebars template.
    pub url: String,
    /// Image shown with the notification, a Handlebars template.
    pub image_url: String,
    /// A silent (background) notification carries data only, so it needs no title or body.
    pub silent: bool,
    /// Key-value data delivered to the app; each value is a Handlebars template.
    pub raw_data: BTreeMap<String, String>,
}

/// A voice message template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceTemplate {
    /// Script spoken to the recipient, a Handlebars template.
    pub body: String,
    /// Language of the script, e.g. `en-US`; copied as is.
    pub language_code: String,
    /// Provider's voice name, e.g. `Joanna`; copied as is.
    pub voice_id: String,
}

/// An in-app message template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InAppTemplate {
    /// One of [`IN_APP_LAYOUTS`], or empty to let the app choose; copied as is.
    pub layout: String,
    /// Heading, a Handlebars template.
    pub header: String,
    /// Message text, a Handlebars template.
    pub body: String,
    /// Image, a Handlebars template.
    pub image_url: String,
    /// Label of the button, a Handlebars template.
    pub button_text: String,
    /// Link the button opens, a Handlebars template.
    pub button_url: String,
}

/// The parts of a template, per channel type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum TemplateContent {
    Email(EmailTemplate),
    Sms(SmsTemplate),
    Push(PushTemplate),
    Voice(VoiceTemplate),
    InApp(InAppTemplate),
}

impl TemplateContent {
    /// The channel type this content is for.
    pub fn template_type(&self) -> TemplateType {
        match self {
            Self::Email(_) => TemplateType::Email,
            Self::Sms(_) => TemplateType::Sms,
            Self::Push(_) => TemplateType::Push,
            Self::Voice(_) => TemplateType::Voice,
            Self::InApp(_) => TemplateType::InApp,
        }
    }
}

/// One version of a template as stored; a project's templates are keyed by name and type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Project the template belongs to.
    pub project_id: String,
    /// Unique per project and type, see [`validate_name`].
    pub name: String,
    /// 1 for the first version; each update adds one.
    pub version: u32,
    /// The parts; its variant is the template's type.
    pub content: TemplateContent,
    /// Dotted variable name (e.g. `User.UserAttributes.FirstName`) → text printed when the
    /// variable is missing or empty.
    pub default_substitutions: BTreeMap<String, String>,
    /// Free text for the people who manage templates.
    pub description: String,
    /// RFC 3339, when version 1 was saved.
    pub creation_date: String,
    /// RFC 3339, when this version was saved.
    pub last_modified_date: String,
}

impl Template {
    /// The channel type of the template.
    pub fn template_type(&self) -> TemplateType {
        self.content.template_type()
    }
}

/// A template rendered for one recipient: the same shapes as [`TemplateContent`], with every
/// Handlebars part replaced by its output and the other fields copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum RenderedMessage {
    Email(EmailTemplate),
    Sms(SmsTemplate),
    Push(PushTemplate),
    Voice(VoiceTemplate),
    InApp(InAppTemplate),
}

impl RenderedMessage {
    /// The channel type of the message.
    pub fn template_type(&self) -> TemplateType {
        match self {
            Self::Email(_) => TemplateType::Email,
            Self::Sms(_) => TemplateType::Sms,
            Self::Push(_) => TemplateType::Push,
            Self::Voice(_) => TemplateType::Voice,
            Self::InApp(_) => TemplateType::InApp,
        }
    }
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template breaks the rules of [`validate_template`]; templates are validated when
    /// saved, so this means a stored template predates a rule.
    #[error("template is invalid: {}", list_violations(.0))]
    Invalid(Vec<FieldViolation>),
    /// Handlebars failed while rendering a part.
    #[error("rendering {part} failed: {reason}")]
    Render {
        /// Path of the part, e.g. `email.subject`.
        part: String,
        /// What Handlebars reported.
        reason: String,
    },
}

fn list_violations(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks a template name: 1 to [`MAX_NAME_CHARS`] ASCII letters, digits, `-` or `_`.
pub fn validate_name(field: &str, name: &str) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if name.is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        violations.push(FieldViolation::new(
            field,
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        violations.push(FieldViolation::new(
            field,
            format!("{name:?} contains {bad:?}; use only letters, digits, '-' and '_'"),
        ));
    }
    violations
}

/// Checks a template before it is saved (TPL-1, TPL-3) and returns every problem at once.
///
/// `field` is the path of the template in the request; parts are named under it (e.g.
/// `<field>.email.html_part`), default substitutions as `<field>.default_substitutions["k"]`.
/// A part that does not parse is reported with the line and column of the error.
pub fn validate_template(
    field: &str,
    content: &TemplateContent,
    default_substitutions: &BTreeMap<String, String>,
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    check_required_parts(field, content, &mut violations);
    check_default_substitutions(field, default_substitutions, &mut violations);
    for part in text_parts(content) {
        // Parsing reports syntax errors, unknown helpers, partials and decorators.
        let _ = parse_part(field, &part, &mut violations);
    }
    violations
}

fn check_required_parts(field: &str, content: &TemplateContent, out: &mut Vec<FieldViolation>) {
    let blank = |text: &str| text.trim().is_empty();
    match content {
        TemplateContent::Email(email) => {
            if blank(&email.subject) {
                out.push(FieldViolation::new(
                    join(field, "email.subject"),
                    "must not be empty",
                ));
            }
            if blank(&email.html_part) && blank(&email.text_part) {
                out.push(FieldViolation::new(
                    join(field, "email"),
                    "needs an html_part or a text_part",
                ));
            }
        }
        TemplateContent::Sms(sms) => {
            if blank(&sms.body) {
                out.push(FieldViolation::new(
                    join(field, "sms.body"),
                    "must not be empty",
                ));
            }
        }
        TemplateContent::Push(push) => {
            if !push.silent && blank(&push.title) && blank(&push.body) {
                out.push(FieldViolation::new(
                    join(field, "push"),
                    "needs a title or a body unless it is silent",
                ));
            }
            if !push.action.is_empty() && !PUSH_ACTIONS.contains(&push.action.as_str()) {
                out.push(FieldViolation::new(
                    join(field, "push.action"),
                    format!(
                        "{:?} is not an action; use one of {}",
                        push.action,
                        PUSH_ACTIONS.join(", ")
                    ),
                ));
            }
            if (push.action == "URL" || push.action == "DEEP_LINK") && blank(&push.url) {
                out.push(FieldViolation::new(
                    join(field, "push.url"),
                    format!("must not be empty when the action is {}", push.action),
                ));
            }
            if push.raw_data.len() > MAX_PUSH_DATA_ENTRIES {
                out.push(FieldViolation::new(
                    join(field, "push.raw_data"),
                    format!(
                        "has {} entries, more than the limit of {MAX_PUSH_DATA_ENTRIES}",
                        push.raw_data.len()
                    ),
                ));
            }
            if push.raw_data.keys().any(|key| key.is_empty()) {
                out.push(FieldViolation::new(
                    join(field, "push.raw_data"),
                    "keys must not be empty",
                ));
            }
        }
        TemplateContent::Voice(voice) => {
            if blank(&voice.body) {
                out.push(FieldViolation::new(
                    join(field, "voice.body"),
                    "must not be empty",
                ));
            }
            if !voice.language_code.is_empty() && !is_language_tag(&voice.language_code) {
                out.push(FieldViolation::new(
                    join(field, "voice.language_code"),
                    format!(
                        "{:?} is not a language code (e.g. en-US)",
                        voice.language_code
                    ),
                ));
            }
            if voice.voice_id.chars().count() > MAX_NAME_CHARS {
                out.push(FieldViolation::new(
                    join(field, "voice.voice_id"),
                    format!("is longer than {MAX_NAME_CHARS} characters"),
                ));
            }
        }
        TemplateContent::InApp(in_app) => {
            if blank(&in_app.header) && blank(&in_app.body) {
                out.push(FieldViolation::new(
                    join(field, "in_app"),
                    "needs a header or a body",
                ));
            }
            if !in_app.layout.is_empty() && !IN_APP_LAYOUTS.contains(&in_app.layout.as_str()) {
                out.push(FieldViolation::new(
                    join(field, "in_app.layout"),
                    format!(
                        "{:?} is not a layout; use one of {}",
                        in_app.layout,
                        IN_APP_LAYOUTS.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Whether `tag` looks like a BCP 47 language tag: `en`, `en-US`, `pt-BR`, `cmn-Hans-CN`.
fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && subtags
            .all(|s| (2..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn check_default_substitutions(
    field: &str,
    defaults: &BTreeMap<String, String>,
    out: &mut Vec<FieldViolation>,
) {
    let path = join(field, "default_substitutions");
    if defaults.len() > MAX_DEFAULT_SUBSTITUTIONS {
        out.push(FieldViolation::new(
            &path,
            format!(
                "has {} entries, more than the limit of {MAX_DEFAULT_SUBSTITUTIONS}",
                defaults.len()
            ),
        ));
    }
    for (name, value) in defaults {
        let entry = format!("{path}[{name:?}]");
        if name.is_empty() {
            out.push(FieldViolation::new(
                entry,
                "variable name must not be empty",
            ));
        } else if name.chars().count() > MAX_VARIABLE_NAME_CHARS {
            out.push(FieldViolation::new(
                entry,
                format!("variable name is longer than {MAX_VARIABLE_NAME_CHARS} characters"),
            ));
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            out.push(FieldViolation::new(
                entry,
                "variable name must not contain spaces or control characters",
            ));
        } else if value.len() > MAX_DEFAULT_VALUE_BYTES {
            out.push(FieldViolation::new(
                entry,
                format!(
                    "is {} bytes, more than the limit of {MAX_DEFAULT_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
    }
}

/// One Handlebars part of a template.
struct TextPart<'a> {
    /// Path under the template, e.g. `email.subject`; also the part's name in the registry.
    path: String,
    /// The template text.
    source: &'a str,
    /// Whether values printed into it are HTML-escaped (the email HTML part only).
    escape_html: bool,
}

impl<'a> TextPart<'a> {
    fn plain(path: &str, source: &'a str) -> Self {
        Self {
            path: path.to_string(),
            source,
            escape_html: false,
        }
    }
}

fn raw_data_path(key: &str) -> String {
    format!("push.raw_data[{key:?}]")
}

/// Every Handlebars part of `content`, the ones that are empty included.
fn text_parts(content: &TemplateContent) -> Vec<TextPart<'_>> {
    match content {
        TemplateContent::Email(email) => vec![
            TextPart::plain("email.subject", &email.subject),
            TextPart {
                path: "email.html_part".to_string(),
                source: &email.html_part,
                escape_html: true,
            },
            TextPart::plain("email.text_part", &email.text_part),
        ],
        TemplateContent::Sms(sms) => vec![TextPart::plain("sms.body", &sms.body)],
        TemplateContent::Push(push) => {
            let mut parts = vec![
                TextPart::plain("push.title", &push.title),
                TextPart::plain("push.body", &push.body),
                TextPart::plain("push.url", &push.url),
                TextPart::plain("push.image_url", &push.image_url),
            ];
            parts.extend(push.raw_data.iter().map(|(key, value)| TextPart {
                path: raw_data_path(key),
                source: value,
                escape_html: false,
            }));
            parts
        }
        TemplateContent::Voice(voice) => vec![TextPart::plain("voice.body", &voice.body)],
        TemplateContent::InApp(in_app) => vec![
            TextPart::plain("in_app.header", &in_app.header),
            TextPart::plain("in_app.body", &in_app.body),
            TextPart::plain("in_app.image_url", &in_app.image_url),
            TextPart::plain("in_app.button_text", &in_app.button_text),
            TextPart::plain("in_app.button_url", &in_app.button_url),
        ],
    }
}

/// Parses one part and prepares it for rendering; `None` when it breaks a rule, which is
/// then in `out`.
fn parse_part(
    field: &str,
    part: &TextPart<'_>,
    out: &mut Vec<FieldViolation>,
) -> Option<hb::Template> {
    let path = join(field, &part.path);
    if part.source.len() > MAX_PART_BYTES {
        out.push(FieldViolation::new(
            path,
            format!(
                "is {} bytes, more than the limit of {MAX_PART_BYTES}",
                part.source.len()
            ),
        ));
        return None;
    }
    let mut template = match hb::Template::compile(part.source) {
        Ok(template) => template,
        Err(error) => {
            out.push(FieldViolation::new(path, parse_error_reason(&error)));
            return None;
        }
    };
    let before = out.len();
    prepare_template(&mut template, &path, out);
    (out.len() == before).then_some(template)
}

/// `does not parse at line L, column C: <what Handlebars says>`.
fn parse_error_reason(error: &hb::TemplateError) -> String {
    // The syntax reason of Handlebars embeds the parser's multi-line excerpt; its first line
    // is enough next to the position.
    let reason = error.reason().to_string();
    let reason = reason.lines().next().unwrap_or_default().trim();
    match error.pos() {
        Some((line, column)) => format!("does not parse at line {line}, column {column}: {reason}"),
        None => format!("does not parse: {reason}"),
    }
}

/// Where an element starts, for messages: ` at line L, column C`.
fn position(mapping: Option<&hb::template::TemplateMapping>) -> String {
    mapping.map_or_else(String::new, |m| format!(" at line {}, column {}", m.0, m.1))
}

/// Checks the helpers of a parsed template and routes printed and compared variables through
/// [`VALUE_HELPER`], recursing into blocks.
fn prepare_template(template: &mut hb::Template, path: &str, out: &mut Vec<FieldViolation>) {
    let hb::Template {
        elements, mapping, ..
    } = template;
    for (index, element) in elements.iter_mut().enumerate() {
        let at = position(mapping.get(index));
        match element {
            TemplateElement::Expression(helper) | TemplateElement::HtmlExpression(helper) => {
                prepare_helper(helper, Placement::Inline, &at, path, out);
            }
            TemplateElement::HelperBlock(helper) => {
                prepare_helper(helper, Placement::Block, &at, path, out);
            }
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                out.push(FieldViolation::new(
                    path,
                    format!("partials ({{{{> name}}}}) are not supported{at}"),
                ));
            }
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                out.push(FieldViolation::new(
                    path,
                    format!("decorators ({{{{* name}}}}) are not supported{at}"),
                ));
            }
            _ => {}
        }
    }
}

fn helper_min_params(name: &str) -> Option<usize> {
    HELPERS
        .iter()
        .find(|(helper, _)| *helper == name)
        .map(|(_, min)| *min)
}

fn helper_names() -> String {
    HELPERS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a helper expression stands, which decides what an unknown name means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// `{{name}}` or `{{name param}}`: a bare name is a variable.
    Inline,
    /// `{{#name param}}…{{/name}}`.
    Block,
    /// `(name param)` inside another helper's parameters: always a helper call.
    Subexpression,
}

fn prepare_helper(
    helper: &mut HelperTemplate,
    placement: Placement,
    at: &str,
    path: &str,
    out: &mut Vec<FieldViolation>,
) {
    let name = helper.name.as_name().map(str::to_string);
    let is_variable =
        placement == Placement::Inline && helper.params.is_empty() && helper.hash.is_empty();
    match name.as_deref().map(|n| (n, helper_min_params(n))) {
        Some((name, Some(min_params))) => {
            if helper.params.len() < min_params {
                out.push(FieldViolation::new(
                    path,
                    format!("helper {name:?}{at} needs {min_params} parameter(s)"),
                ));
            }
            let reads_values = VALUE_COMPARING_HELPERS.contains(&name);
            for param in &mut helper.params {
                prepare_param(param, reads_values, at, path, out);
            }
        }
        Some((name, None)) if is_variable => {
            let variable = match &helper.name {
                Parameter::Path(_) => Ok(helper.name.clone()),
                _ => Parameter::parse(name),
            };
            match variable {
                Ok(variable) => {
                    helper.name = Parameter::Name(VALUE_HELPER.to_string());
                    helper.params = vec![variable];
                }
                Err(_) => out.push(FieldViolation::new(
                    path,
                    format!("{name:?}{at} is not a variable name"),
                )),
            }
        }
        Some((name, None)) if placement == Placement::Block => out.push(FieldViolation::new(
            path,
            format!(
                "{{{{#{name}}}}}{at} is not a block helper; use {{{{#if {name}}}}} or \
                 {{{{#each {name}}}}}"
            ),
        )),
        Some((name, None)) => out.push(FieldViolation::new(
            path,
            format!(
                "unknown helper {name:?}{at}; helpers are {}",
                helper_names()
            ),
        )),
        None => out.push(FieldViolation::new(
            path,
            format!("an expression{at} must start with a variable or a helper name"),
        )),
    }
    if let Some(template) = &mut helper.template {
        prepare_template(template, path, out);
    }
    if let Some(inverse) = &mut helper.inverse {
        prepare_template(inverse, path, out);
    }
}

fn prepare_param(
    param: &mut Parameter,
    reads_value: bool,
    at: &str,
    path: &str,
    out: &mut Vec<FieldViolation>,
) {
    match param {
        Parameter::Subexpression(subexpression) => {
            if let TemplateElement::Expression(helper) = subexpression.element.as_mut() {
                prepare_helper(helper, Placement::Subexpression, at, path, out);
            }
        }
        Parameter::Path(_) if reads_value => {
            let variable = std::mem::replace(param, Parameter::Literal(Value::Null));
            *param = Parameter::Subexpression(Subexpression::new(
                Parameter::Name(VALUE_HELPER.to_string()),
                vec![variable],
                HashMap::new(),
            ));
        }
        _ => {}
    }
}

/// The printable value of a variable: a list's first value; `None` for a missing, null or
/// empty value, an empty list, or an object.
fn printable(value: &Value) -> Option<&Value> {
    let value = match value {
        Value::Array(values) => values.first()?,
        value => value,
    };
    match value {
        Value::String(text) if text.is_empty() => None,
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(value),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Prints a variable: its first value when it is a list, else its default, else nothing.
struct ValueHelper {
    /// The template's default substitutions, by the variable's name as written.
    defaults: Arc<BTreeMap<String, String>>,
}

impl hb::HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        helper: &hb::Helper<'rc>,
        _: &'reg hb::Handlebars<'reg>,
        _: &'rc hb::Context,
        _: &mut hb::RenderContext<'reg, 'rc>,
    ) -> Result<hb::ScopedJson<'rc>, hb::RenderError> {
        let Some(param) = helper.param(0) else {
            return Ok(hb::ScopedJson::Derived(Value::Null));
        };
        if let Some(value) = printable(param.value()) {
            return Ok(hb::ScopedJson::Derived(value.clone()));
        }
        let default = param
            .relative_path()
            .and_then(|name| self.defaults.get(name))
            .map_or(Value::Null, |text| Value::String(text.clone()));
        Ok(hb::ScopedJson::Derived(default))
    }
}

/// `{{default x "friend"}}`: `x` when it has a value, else the second parameter.
struct DefaultHelper;

impl hb::HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        helper: &hb::Helper<'rc>,
        _: &'reg hb::Handlebars<'reg>,
        _: &'rc hb::Context,
        _: &mut hb::RenderContext<'reg, 'rc>,
    ) -> Result<hb::ScopedJson<'rc>, hb::RenderError> {
        let value = helper
            .params()
            .iter()
            .take(2)
            .find_map(|param| printable(param.value()))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(hb::ScopedJson::Derived(value))
    }
}

/// Renders nothing: stands in for helpers a template names but Herald lacks, so a template
/// saved before a rule existed still renders.
struct NothingHelper;

impl hb::HelperDef for NothingHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        _: &hb::Helper<'rc>,
        _: &'reg hb::Handlebars<'reg>,
        _: &'rc hb::Context,
        _: &mut hb::RenderContext<'reg, 'rc>,
    ) -> Result<hb::ScopedJson<'rc>, hb::RenderError> {
        Ok(hb::ScopedJson::Derived(Value::Null))
    }
}

/// A registry with Herald's helpers, escaping HTML or not.
fn registry(
    escape_html: bool,
    defaults: &Arc<BTreeMap<String, String>>,
) -> hb::Handlebars<'static> {
    let mut registry = hb::Handlebars::new();
    if !escape_html {
        registry.register_escape_fn(hb::no_escape);
    }
    registry.register_helper(
        VALUE_HELPER,
        Box::new(ValueHelper {
            defaults: Arc::clone(defaults),
        }),
    );
    registry.register_helper("default", Box::new(DefaultHelper));
    registry.register_helper("helperMissing", Box::new(NothingHelper));
    registry.register_helper("blockHelperMissing", Box::new(NothingHelper));
    registry
}

/// The variables of one recipient, built once and rendered into any number of templates.
#[derive(Debug, Clone)]
pub struct RenderContext {
    /// Pinpoint's variable tree: `Address`, `Attributes`, `User`, substitutions, …
    data: hb::Context,
}

impl RenderContext {
    /// The variables of `endpoint`, with per-message `substitutions` at the top level and
    /// `defaults` (dotted variable name → text) filling variables that are missing or empty.
    ///
    /// An endpoint variable wins over a substitution of the same name (see
    /// [`ENDPOINT_VARIABLES`]); a value wins over a default here, and a default given here
    /// wins over the template's own.
    pub fn for_endpoint(
        endpoint: &Endpoint,
        substitutions: &BTreeMap<String, Vec<String>>,
        defaults: &BTreeMap<String, String>,
    ) -> Self {
        Self::for_endpoint_with(endpoint, substitutions, defaults, None)
    }

    /// Like [`Self::for_endpoint`], with only the top-level variables in `roots` (all when
    /// `None`): a template that reads `User` and `Attributes` does not need the rest built
    /// for each of a campaign's recipients. See [`CompiledTemplate::context_roots`].
    pub fn for_endpoint_with(
        endpoint: &Endpoint,
        substitutions: &BTreeMap<String, Vec<String>>,
        defaults: &BTreeMap<String, String>,
        roots: Option<&BTreeSet<String>>,
    ) -> Self {
        let wanted = |name: &str| roots.is_none_or(|roots| roots.contains(name));
        let mut root = Map::new();
        for (name, values) in substitutions {
            root.insert(name.clone(), string_list(values));
        }
        let text = |value: &str| Value::String(value.to_string());
        let mut put = |name: &str, value: &dyn Fn() -> Value| {
            if wanted(name) {
                root.insert(name.into(), value());
            }
        };
        put("ProjectId", &|| text(&endpoint.project_id));
        put("Address", &|| text(&endpoint.address));
        put("ChannelType", &|| text(endpoint.channel_type.as_str()));
        put("EndpointId", &|| text(&endpoint.endpoint_id));
        put("Id", &|| text(&endpoint.endpoint_id));
        put("CohortId", &|| text(&endpoint.cohort_id.to_string()));
        put("CreationDate", &|| text(&endpoint.creation_date));
        put("EffectiveDate", &|| text(&endpoint.effective_date));
        put("EndpointStatus", &|| {
            text(match endpoint.status {
                EndpointStatus::Active => "ACTIVE",
                EndpointStatus::Inactive => "INACTIVE",
            })
        });
        put("OptOut", &|| {
            text(match endpoint.opt_out {
                OptOut::None => "NONE",
                OptOut::All => "ALL",
            })
        });
        put("RequestId", &|| text(&endpoint.request_id));
        put("Attributes", &|| attribute_map(&endpoint.attributes));
        put("Metrics", &|| {
            Value::Object(
                endpoint
                    .metrics
                    .iter()
                    .map(|(name, value)| (name.clone(), number(*value)))
                    .collect(),
            )
        });
        put("Demographic", &|| demographic_map(endpoint));
        put("Location", &|| location_map(endpoint));
        put("User", &|| {
            let mut user = Map::new();
            user.insert("UserId".into(), text(&endpoint.user.user_id));
            user.insert(
                "UserAttributes".into(),
                attribute_map(&endpoint.user.user_attributes),
            );
            Value::Object(user)
        });
        let mut data = Value::Object(root);
        for (name, default) in defaults {
            fill_default(&mut data, name, default);
        }
        Self {
            data: hb::Context::from(data),
        }
    }

    /// The variable tree, as templates see it.
    pub fn data(&self) -> &Value {
        self.data.data()
    }
}

/// `Demographic`: every field, empty ones as empty text.
fn demographic_map(endpoint: &Endpoint) -> Value {
    let demographic = &endpoint.demographic;
    let mut map = Map::new();
    for (name, value) in [
        ("AppVersion", &demographic.app_version),
        ("Locale", &demographic.locale),
        ("Make", &demographic.make),
        ("Model", &demographic.model),
        ("ModelVersion", &demographic.model_version),
        ("Platform", &demographic.platform),
        ("PlatformVersion", &demographic.platform_version),
        ("Timezone", &demographic.timezone),
    ] {
        map.insert(name.into(), Value::String(value.clone()));
    }
    Value::Object(map)
}

/// `Location`: the text fields, and the coordinates when known.
fn location_map(endpoint: &Endpoint) -> Value {
    let location = &endpoint.location;
    let mut map = Map::new();
    for (name, value) in [
        ("City", &location.city),
        ("Country", &location.country),
        ("PostalCode", &location.postal_code),
        ("Region", &location.region),
    ] {
        map.insert(name.into(), Value::String(value.clone()));
    }
    if let Some(latitude) = location.latitude {
        map.insert("Latitude".into(), number(latitude));
    }
    if let Some(longitude) = location.longitude {
        map.insert("Longitude".into(), number(longitude));
    }
    Value::Object(map)
}

fn string_list(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

fn attribute_map(attributes: &BTreeMap<String, Vec<String>>) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|(name, values)| (name.clone(), string_list(values)))
            .collect(),
    )
}

/// A metric as JSON: whole numbers without `.0`, so `{{Metrics.visits}}` prints `3`.
fn number(value: f64) -> Value {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGERS {
        // Exact: a whole number below 2^53 converts without loss.
        return Value::from(value as i64);
    }
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// Puts `default` at the dotted path `name` when nothing printable is there.
fn fill_default(data: &mut Value, name: &str, default: &str) {
    let mut node = data;
    let mut segments = name.split('.').peekable();
    while let Some(segment) = segments.next() {
        let Value::Object(map) = node else {
            return;
        };
        if segments.peek().is_none() {
            let slot = map.entry(segment).or_insert(Value::Null);
            if printable(slot).is_none() {
                *slot = Value::String(default.to_string());
            }
            return;
        }
        node = map
            .entry(segment)
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// A template parsed once, rendered for any number of recipients.
#[derive(Debug, Clone)]
pub struct CompiledTemplate {
    /// The parts as written: says which parts exist and holds the fields copied as is.
    content: TemplateContent,
    /// Every part but the email HTML part, printing values as they are.
    plain: hb::Handlebars<'static>,
    /// The email HTML part, printing values HTML-escaped.
    html: hb::Handlebars<'static>,
    /// Parts that are only text and variables, by part path: printed without Handlebars
    /// (the same output, see the `fast_parts_render_like_handlebars` property test).
    simple: HashMap<String, SimplePart>,
    /// The top-level variables the parts read, or `None` when that cannot be told.
    roots: Option<BTreeSet<String>>,
    /// The template's default substitutions.
    defaults: Arc<BTreeMap<String, String>>,
}

/// A part that is only text and variables.
#[derive(Debug, Clone)]
struct SimplePart {
    pieces: Vec<Piece>,
    /// Whether values are HTML-escaped (the email HTML part, except `{{{x}}}`).
    escape_html: bool,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Variable {
        /// The path's segments.
        segments: Vec<String>,
        /// The path as written: the key of its default.
        written: String,
        /// `{{{x}}}`: never escaped.
        raw: bool,
    },
}

impl SimplePart {
    /// The part's pieces, when every element is text, a comment or a variable with a plain
    /// path (the variable helper around it, see [`prepare_helper`]).
    fn of(template: &hb::Template, escape_html: bool) -> Option<Self> {
        let mut pieces = Vec::with_capacity(template.elements.len());
        for element in &template.elements {
            let (helper, raw) = match element {
                TemplateElement::RawString(text) => {
                    pieces.push(Piece::Text(text.clone()));
                    continue;
                }
                TemplateElement::Comment(_) => continue,
                TemplateElement::Expression(helper) => (helper, false),
                TemplateElement::HtmlExpression(helper) => (helper, true),
                _ => return None,
            };
            if helper.name.as_name() != Some(VALUE_HELPER)
                || !helper.hash.is_empty()
                || helper.template.is_some()
                || helper.inverse.is_some()
            {
                return None;
            }
            let [Parameter::Path(hb::Path::Relative((segments, written)))] =
                helper.params.as_slice()
            else {
                return None;
            };
            let segments = segments
                .iter()
                .map(|segment| match segment {
                    hb::PathSeg::Named(name) => Some(name.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .filter(|segments| !segments.is_empty())?;
            pieces.push(Piece::Variable {
                segments,
                written: written.clone(),
                raw,
            });
        }
        Some(Self {
            pieces,
            escape_html,
        })
    }

    /// Prints the part as Handlebars would with the variable helper: a value's printable
    /// form, else the default, else nothing.
    fn render(&self, context: &RenderContext, defaults: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Variable {
                    segments,
                    written,
                    raw,
                } => {
                    let value = lookup(context.data(), segments).and_then(printable);
                    let text = match value {
                        Some(Value::String(text)) => std::borrow::Cow::Borrowed(text.as_str()),
                        Some(value) => std::borrow::Cow::Owned(hb::JsonRender::render(value)),
                        None => match defaults.get(written) {
                            Some(default) => std::borrow::Cow::Borrowed(default.as_str()),
                            None => continue,
                        },
                    };
                    if self.escape_html && !raw {
                        out.push_str(&hb::html_escape(&text));
                    } else {
                        out.push_str(&text);
                    }
                }
            }
        }
        out
    }
}

/// The value at `segments` as Handlebars finds it: object keys, and list positions by number.
fn lookup<'a>(data: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments.iter().try_fold(data, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(values) => segment.parse::<usize>().ok().and_then(|i| values.get(i)),
        _ => None,
    })
}

/// Adds the top-level variables `template` reads to `roots`; false when it cannot tell (a
/// path that climbs out of a block or starts at `this` or `@root`).
fn collect_roots(template: &hb::Template, roots: &mut BTreeSet<String>) -> bool {
    template.elements.iter().all(|element| match element {
        TemplateElement::Expression(helper)
        | TemplateElement::HtmlExpression(helper)
        | TemplateElement::HelperBlock(helper) => helper_roots(helper, roots),
        TemplateElement::RawString(_) | TemplateElement::Comment(_) => true,
        _ => false,
    })
}

fn helper_roots(helper: &HelperTemplate, roots: &mut BTreeSet<String>) -> bool {
    let params_known = std::iter::once(&helper.name)
        .chain(&helper.params)
        .chain(helper.hash.values())
        .all(|param| param_roots(param, roots));
    // Paths inside a block are taken as top-level too: more than needed at worst.
    params_known
        && helper
            .template
            .iter()
            .chain(&helper.inverse)
            .all(|template| collect_roots(template, roots))
}

fn param_roots(param: &Parameter, roots: &mut BTreeSet<String>) -> bool {
    match param {
        Parameter::Name(_) | Parameter::Literal(_) => true,
        Parameter::Path(hb::Path::Relative((segments, _))) => match segments.first() {
            Some(hb::PathSeg::Named(name)) => {
                roots.insert(name.clone());
                true
            }
            _ => false,
        },
        // `@index`, `@key`: a block's own variables.
        Parameter::Path(hb::Path::Local(_)) => true,
        Parameter::Subexpression(subexpression) => match subexpression.element.as_ref() {
            TemplateElement::Expression(helper) => helper_roots(helper, roots),
            _ => false,
        },
        _ => false,
    }
}

impl CompiledTemplate {
    /// Parses every part of `content`; `defaults` (dotted variable name → text) are printed
    /// for variables that are missing or empty. Errors are [`validate_template`]'s parse
    /// problems, named by part (e.g. `email.html_part`).
    pub fn compile(
        content: &TemplateContent,
        defaults: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let defaults = Arc::new(defaults.clone());
        let mut plain = registry(false, &defaults);
        let mut html = registry(true, &defaults);
        let mut violations = Vec::new();
        let mut simple = HashMap::new();
        let mut roots = Some(BTreeSet::new());
        for part in text_parts(content) {
            if let Some(template) = parse_part("", &part, &mut violations) {
                if let Some(known) = roots.as_mut()
                    && !collect_roots(&template, known)
                {
                    roots = None;
                }
                if let Some(fast) = SimplePart::of(&template, part.escape_html) {
                    simple.insert(part.path.clone(), fast);
                }
                let target = if part.escape_html {
                    &mut html
                } else {
                    &mut plain
                };
                target.register_template(&part.path, template);
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(Self {
            content: content.clone(),
            plain,
            html,
            simple,
            roots,
            defaults,
        })
    }

    /// The top-level variables the template reads, when that can be told: what a
    /// [`RenderContext`] for it needs ([`RenderContext::for_endpoint_with`]).
    pub fn context_roots(&self) -> Option<&BTreeSet<String>> {
        self.roots.as_ref()
    }

    /// The channel type of the template.
    pub fn template_type(&self) -> TemplateType {
        self.content.template_type()
    }

    /// Renders every part for one recipient. Missing variables print their default or
    /// nothing; an error means Handlebars itself failed.
    pub fn render(&self, context: &RenderContext) -> Result<RenderedMessage, TemplateError> {
        self.render_parts(context, true)
    }

    fn render_parts(
        &self,
        context: &RenderContext,
        fast: bool,
    ) -> Result<RenderedMessage, TemplateError> {
        let part = |registry: &hb::Handlebars<'static>, path: &str| match self
            .simple
            .get(path)
            .filter(|_| fast)
        {
            Some(simple) => Ok(simple.render(context, &self.defaults)),
            None => render_part(registry, path, context),
        };
        let plain = |path: &str| part(&self.plain, path);
        Ok(match &self.content {
            TemplateContent::Email(_) => RenderedMessage::Email(EmailTemplate {
                subject: plain("email.subject")?,
                html_part: part(&self.html, "email.html_part")?,
                text_part: plain("email.text_part")?,
            }),
            TemplateContent::Sms(_) => RenderedMessage::Sms(SmsTemplate {
                body: plain("sms.body")?,
            }),
            TemplateContent::Push(push) => RenderedMessage::Push(PushTemplate {
                title: plain("push.title")?,
                body: plain("push.body")?,
                action: push.action.clone(),
                url: plain("push.url")?,
                image_url: plain("push.image_url")?,
                silent: push.silent,
                raw_data: push
                    .raw_data
                    .keys()
                    .map(|key| Ok((key.clone(), plain(&raw_data_path(key))?)))
                    .collect::<Result<_, TemplateError>>()?,
            }),
            TemplateContent::Voice(voice) => RenderedMessage::Voice(VoiceTemplate {
                body: plain("voice.body")?,
                language_code: voice.language_code.clone(),
                voice_id: voice.voice_id.clone(),
            }),
            TemplateContent::InApp(in_app) => RenderedMessage::InApp(InAppTemplate {
                layout: in_app.layout.clone(),
                header: plain("in_app.header")?,
                body: plain("in_app.body")?,
                image_url: plain("in_app.image_url")?,
                button_text: plain("in_app.button_text")?,
                button_url: plain("in_app.button_url")?,
            }),
        })
    }
}

fn render_part(
    registry: &hb::Handlebars<'static>,
    path: &str,
    context: &RenderContext,
) -> Result<String, TemplateError> {
    registry
        .render_with_context(path, &context.data)
        .map_err(|error| TemplateError::Render {
            part: path.to_string(),
            reason: error.to_string(),
        })
}

/// Compiles `content` without defaults and renders it once; for a single message. Campaigns
/// compile once with [`CompiledTemplate::compile`] instead.
pub fn render(
    content: &TemplateContent,
    context: &RenderContext,
) -> Result<RenderedMessage, TemplateError> {
    CompiledTemplate::compile(content, &BTreeMap::new())
        .map_err(TemplateError::Invalid)?
        .render(context)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::endpoint::{ChannelType, Demographic, Location, User};

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(ToString::to_string).collect()
    }

    /// Ana's phone: every family of variables has a value.
    fn ana() -> Endpoint {
        Endpoint {
            project_id: "shop".to_string(),
            endpoint_id: "ana-phone".to_string(),
            address: "+5511987654321".to_string(),
            channel_type: ChannelType::Sms,
            attributes: BTreeMap::from([
                ("plan".to_string(), strings(&["gold", "silver"])),
                ("interests".to_string(), strings(&["shoes", "hats", "bags"])),
            ]),
            metrics: BTreeMap::from([("visits".to_string(), 3.0), ("spend".to_string(), 12.5)]),
            demographic: Demographic {
                app_version: "2.4.1".to_string(),
                locale: "pt_BR".to_string(),
                make: "Samsung".to_string(),
                model: "Galaxy S24".to_string(),
                model_version: "SM-S921B".to_string(),
                platform: "android".to_string(),
                platform_version: "14".to_string(),
                timezone: "America/Sao_Paulo".to_string(),
            },
            location: Location {
                city: "São Paulo".to_string(),
                country: "BR".to_string(),
                latitude: Some(-23.55),
                longitude: Some(-46.63),
                postal_code: "01310-100".to_string(),
                region: "SP".to_string(),
            },
            opt_out: OptOut::None,
            status: EndpointStatus::Active,
            user: User {
                user_id: "user-ana".to_string(),
                user_attributes: BTreeMap::from([
                    ("FirstName".to_string(), strings(&["Ana"])),
                    ("Nicknames".to_string(), strings(&["Aninha", "Nana"])),
                ]),
            },
            effective_date: "2026-11-25T12:00:00Z".to_string(),
            creation_date: "2026-01-01T00:00:00Z".to_string(),
            request_id: "req-1".to_string(),
            cohort_id: 42,
        }
    }

    fn sms(body: &str) -> TemplateContent {
        TemplateContent::Sms(SmsTemplate {
            body: body.to_string(),
        })
    }

    fn email(subject: &str, html_part: &str, text_part: &str) -> TemplateContent {
        TemplateContent::Email(EmailTemplate {
            subject: subject.to_string(),
            html_part: html_part.to_string(),
            text_part: text_part.to_string(),
        })
    }

    fn context(endpoint: &Endpoint) -> RenderContext {
        RenderContext::for_endpoint(endpoint, &BTreeMap::new(), &BTreeMap::new())
    }

    /// Renders an SMS body for `endpoint` with the template's `defaults`.
    fn render_sms(body: &str, endpoint: &Endpoint, defaults: &[(&str, &str)]) -> String {
        let defaults = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let compiled = CompiledTemplate::compile(&sms(body), &defaults).expect("template compiles");
        match compiled
            .render(&context(endpoint))
            .expect("template renders")
        {
            RenderedMessage::Sms(sms) => sms.body,
            other => panic!("expected an SMS, got {other:?}"),
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    /// Every Pinpoint variable family reaches the message: endpoint fields, attributes,
    /// metrics, demographic, location, user and per-message substitutions, so a marketer's
    /// existing templates personalize the same way in Herald.
    #[test]
    fn personalization_uses_every_variable_family() {
        let cases = [
            ("{{Address}}", "+5511987654321"),
            ("{{ChannelType}}", "SMS"),
            ("{{EndpointId}} {{Id}}", "ana-phone ana-phone"),
            ("{{CohortId}}", "42"),
            ("{{OptOut}} {{EndpointStatus}}", "NONE ACTIVE"),
            ("{{EffectiveDate}}", "2026-11-25T12:00:00Z"),
            ("{{Attributes.plan}}", "gold"),
            ("{{Metrics.visits}} {{Metrics.spend}}", "3 12.5"),
            ("{{Demographic.AppVersion}}", "2.4.1"),
            ("{{Demographic.Locale}}", "pt_BR"),
            (
                "{{Demographic.Make}} {{Demographic.Model}}",
                "Samsung Galaxy S24",
            ),
            ("{{Demographic.ModelVersion}}", "SM-S921B"),
            (
                "{{Demographic.Platform}} {{Demographic.PlatformVersion}}",
                "android 14",
            ),
            ("{{Demographic.Timezone}}", "America/Sao_Paulo"),
            (
                "{{Location.City}}, {{Location.Region}}, {{Location.Country}}",
                "São Paulo, SP, BR",
            ),
            (
                "{{Location.Latitude}},{{Location.Longitude}}",
                "-23.55,-46.63",
            ),
            ("{{Location.PostalCode}}", "01310-100"),
            ("{{User.UserId}}", "user-ana"),
            ("Olá {{User.UserAttributes.FirstName}}!", "Olá Ana!"),
        ];
        for (body, expected) in cases {
            assert_eq!(render_sms(body, &ana(), &[]), expected, "{body}");
        }

        let substitutions = BTreeMap::from([
            ("OrderId".to_string(), strings(&["A-1001"])),
            ("Address".to_string(), strings(&["ignored"])),
        ]);
        let context = RenderContext::for_endpoint(&ana(), &substitutions, &BTreeMap::new());
        let rendered = render(&sms("{{OrderId}} to {{Address}}"), &context).unwrap();
        assert_eq!(
            rendered,
            RenderedMessage::Sms(SmsTemplate {
                body: "A-1001 to +5511987654321".to_string()
            })
        );
    }

    /// One compiled template renders each endpoint with its own values, so a campaign parses
    /// once and personalizes every message.
    #[test]
    fn one_compiled_template_serves_many_endpoints() {
        let compiled = CompiledTemplate::compile(
            &sms("Hi {{User.UserAttributes.FirstName}}"),
            &BTreeMap::new(),
        )
        .unwrap();
        for name in ["Ana", "Bruno", "Carla"] {
            let mut endpoint = ana();
            endpoint
                .user
                .user_attributes
                .insert("FirstName".to_string(), strings(&[name]));
            let rendered = compiled.render(&context(&endpoint)).unwrap();
            assert_eq!(
                rendered,
                RenderedMessage::Sms(SmsTemplate {
                    body: format!("Hi {name}")
                })
            );
        }
    }

    /// A list attribute prints its first value, `.[n]` picks another, `#each` walks all of
    /// them, and comparisons see the first value, as in Pinpoint.
    #[test]
    fn list_attributes_print_first_value_unless_indexed() {
        let cases = [
            ("{{Attributes.plan}}", "gold"),
            ("{{Attributes.plan.[1]}}", "silver"),
            ("{{Attributes.plan.[0]}}", "gold"),
            ("{{Attributes.plan.[7]}}", ""),
            ("{{User.UserAttributes.Nicknames}}", "Aninha"),
            ("{{User.UserAttributes.Nicknames.[1]}}", "Nana"),
            (
                "{{#each Attributes.interests}}{{this}};{{/each}}",
                "shoes;hats;bags;",
            ),
            (
                "{{#each Attributes.interests}}{{@index}}={{this}} {{/each}}",
                "0=shoes 1=hats 2=bags ",
            ),
            (
                "{{#if (eq Attributes.plan \"gold\")}}VIP{{else}}regular{{/if}}",
                "VIP",
            ),
            ("{{#if (gt Metrics.visits 2)}}loyal{{/if}}", "loyal"),
            ("{{len Attributes.interests}}", "3"),
            ("{{{Attributes.plan}}}", "gold"),
        ];
        for (body, expected) in cases {
            assert_eq!(render_sms(body, &ana(), &[]), expected, "{body}");
        }
        let substitutions = BTreeMap::from([("Coupons".to_string(), strings(&["TEN", "TWENTY"]))]);
        let context = RenderContext::for_endpoint(&ana(), &substitutions, &BTreeMap::new());
        let rendered = render(&sms("{{Coupons}} {{Coupons.[1]}}"), &context).unwrap();
        assert_eq!(
            rendered,
            RenderedMessage::Sms(SmsTemplate {
                body: "TEN TWENTY".to_string()
            })
        );
    }

    /// A variable the endpoint lacks (or has empty) prints the template's default, or nothing
    /// when there is none; the message is still sent instead of the run failing.
    #[test]
    fn missing_variables_print_default_or_nothing() {
        let mut endpoint = ana();
        endpoint.user.user_attributes.clear();
        endpoint.demographic.platform.clear();
        endpoint.attributes.insert("empty".to_string(), Vec::new());
        let defaults = [
            ("User.UserAttributes.FirstName", "friend"),
            ("Demographic.Platform", "your phone"),
            ("Attributes.empty", "none"),
            ("OrderId", "your order"),
        ];
        let cases = [
            ("Hi {{User.UserAttributes.FirstName}}", "Hi friend"),
            ("on {{Demographic.Platform}}", "on your phone"),
            ("{{Attributes.empty}}", "none"),
            ("{{OrderId}}", "your order"),
            ("[{{Attributes.unknown}}]", "[]"),
            ("[{{Metrics.unknown}}][{{Nope.deeper.still}}]", "[][]"),
            (
                "{{#if (eq User.UserAttributes.FirstName \"friend\")}}yes{{/if}}",
                "yes",
            ),
            (
                "{{#each Attributes.unknown}}x{{else}}no interests{{/each}}",
                "no interests",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(render_sms(body, &endpoint, &defaults), expected, "{body}");
        }

        // Defaults given with the context fill in too, ahead of the template's own.
        let context_defaults = BTreeMap::from([(
            "User.UserAttributes.FirstName".to_string(),
            "customer".to_string(),
        )]);
        let context = RenderContext::for_endpoint(&endpoint, &BTreeMap::new(), &context_defaults);
        let compiled = CompiledTemplate::compile(
            &sms("Hi {{User.UserAttributes.FirstName}}"),
            &BTreeMap::from([(
                "User.UserAttributes.FirstName".to_string(),
                "friend".to_string(),
            )]),
        )
        .unwrap();
        assert_eq!(
            compiled.render(&context).unwrap(),
            RenderedMessage::Sms(SmsTemplate {
                body: "Hi customer".to_string()
            })
        );
    }

    /// `{{default x "friend"}}` prints x when it has a value and the literal otherwise, so a
    /// greeting never reads "Hi ,".
    #[test]
    fn default_helper_falls_back_to_its_literal() {
        let mut nameless = ana();
        nameless
            .user
            .user_attributes
            .insert("FirstName".to_string(), strings(&[""]));
        let body = "Hi {{default User.UserAttributes.FirstName \"friend\"}}, plan {{default Attributes.plan \"basic\"}}";
        assert_eq!(render_sms(body, &ana(), &[]), "Hi Ana, plan gold");
        assert_eq!(render_sms(body, &nameless, &[]), "Hi friend, plan gold");
        nameless.attributes.clear();
        assert_eq!(render_sms(body, &nameless, &[]), "Hi friend, plan basic");
    }

    /// Values are HTML-escaped in the email HTML part only; the subject, the text part and
    /// SMS print them as written, so "Tom & Jerry" never arrives as "Tom &amp; Jerry".
    #[test]
    fn only_email_html_escapes_values() {
        let mut endpoint = ana();
        endpoint.user.user_attributes.insert(
            "FirstName".to_string(),
            strings(&["<b>Tom</b> & \"Jerry\""]),
        );
        let raw = "<b>Tom</b> & \"Jerry\"";
        let escaped = "&lt;b&gt;Tom&lt;/b&gt; &amp; &quot;Jerry&quot;";
        let content = email(
            "For {{User.UserAttributes.FirstName}}",
            "<p>Hi {{User.UserAttributes.FirstName}}</p><p>{{{User.UserAttributes.FirstName}}}</p>",
            "Hi {{User.UserAttributes.FirstName}}",
        );
        let rendered = render(&content, &context(&endpoint)).unwrap();
        assert_eq!(
            rendered,
            RenderedMessage::Email(EmailTemplate {
                subject: format!("For {raw}"),
                html_part: format!("<p>Hi {escaped}</p><p>{raw}</p>"),
                text_part: format!("Hi {raw}"),
            })
        );
        assert_eq!(
            render_sms("Hi {{User.UserAttributes.FirstName}}", &endpoint, &[]),
            format!("Hi {raw}")
        );
    }

    /// A template broken on line 2 is refused at save with the part, the line and the
    /// column, so its author can go straight to the mistake.
    #[test]
    fn parse_errors_name_line_and_column() {
        let content = email(
            "Hello",
            "<p>Hello</p>\n<p>Dear {{User.UserAttributes.FirstName}</p>",
            "Hi {{#if Attributes.plan}}VIP",
        );
        let violations = validate_template("template", &content, &BTreeMap::new());
        assert_eq!(
            fields(&violations),
            vec!["template.email.html_part", "template.email.text_part"]
        );
        let html = &violations[0].reason;
        assert!(
            html.starts_with("does not parse at line 2, column "),
            "{html}"
        );
        assert!(!html.contains('\n'), "{html}");

        let Err(violations) = CompiledTemplate::compile(&content, &BTreeMap::new()) else {
            panic!("a broken template compiled");
        };
        assert_eq!(
            fields(&violations),
            vec!["email.html_part", "email.text_part"]
        );

        let Err(TemplateError::Invalid(violations)) = render(&content, &context(&ana())) else {
            panic!("a broken template rendered");
        };
        assert_eq!(violations.len(), 2);
    }

    /// Helpers Herald does not have, partials and missing parameters are refused at save
    /// with their position, since they would otherwise print nothing at send time.
    #[test]
    fn unknown_helpers_and_partials_are_refused() {
        let cases = [
            (
                "{{shout Attributes.plan}}",
                "unknown helper \"shout\" at line 1, column 1",
            ),
            (
                "ok\n  {{> footer}}",
                "partials ({{> name}}) are not supported at line 2, column 3",
            ),
            (
                "{{#OrderId}}x{{/OrderId}}",
                "{{#OrderId}} at line 1, column 1 is not a block helper",
            ),
            (
                "{{#if}}x{{/if}}",
                "helper \"if\" at line 1, column 1 needs 1 parameter(s)",
            ),
            (
                "{{#if Attributes.plan}}{{nope 1}}{{/if}}",
                "unknown helper \"nope\"",
            ),
            ("{{#if (shout x)}}x{{/if}}", "unknown helper \"shout\""),
        ];
        for (body, expected) in cases {
            let violations = validate_template("", &sms(body), &BTreeMap::new());
            assert_eq!(fields(&violations), vec!["sms.body"], "{body}");
            assert!(
                violations[0].reason.contains(expected),
                "{body}: {}",
                violations[0].reason
            );
        }
    }

    /// Each channel type insists on the parts a message of that type cannot do without,
    /// naming the part to fill in.
    #[test]
    fn required_parts_per_type() {
        let none = BTreeMap::new();
        let check = |content: TemplateContent| validate_template("t", &content, &none);

        assert_eq!(
            fields(&check(email("", "", ""))),
            vec!["t.email.subject", "t.email"]
        );
        assert!(check(email("Hi", "", "text only")).is_empty());
        assert!(check(email("Hi", "<p>html only</p>", "")).is_empty());

        assert_eq!(fields(&check(sms("  "))), vec!["t.sms.body"]);

        let push = PushTemplate::default();
        assert_eq!(
            fields(&check(TemplateContent::Push(push.clone()))),
            vec!["t.push"]
        );
        let silent = PushTemplate {
            silent: true,
            raw_data: BTreeMap::from([("order".to_string(), "{{OrderId}}".to_string())]),
            ..push.clone()
        };
        assert!(check(TemplateContent::Push(silent)).is_empty());
        let link = PushTemplate {
            title: "Sale".to_string(),
            action: "URL".to_string(),
            ..push.clone()
        };
        assert_eq!(
            fields(&check(TemplateContent::Push(link))),
            vec!["t.push.url"]
        );
        let odd = PushTemplate {
            body: "b".to_string(),
            action: "DANCE".to_string(),
            ..push
        };
        assert_eq!(
            fields(&check(TemplateContent::Push(odd))),
            vec!["t.push.action"]
        );

        let voice = VoiceTemplate {
            body: String::new(),
            language_code: "english".to_string(),
            voice_id: "Joanna".to_string(),
        };
        assert_eq!(
            fields(&check(TemplateContent::Voice(voice))),
            vec!["t.voice.body", "t.voice.language_code"]
        );
        let voice = VoiceTemplate {
            body: "Your code is {{Code}}".to_string(),
            language_code: "pt-BR".to_string(),
            voice_id: String::new(),
        };
        assert!(check(TemplateContent::Voice(voice)).is_empty());

        let in_app = InAppTemplate {
            layout: "SIDEWAYS".to_string(),
            ..InAppTemplate::default()
        };
        assert_eq!(
            fields(&check(TemplateContent::InApp(in_app))),
            vec!["t.in_app", "t.in_app.layout"]
        );
        let in_app = InAppTemplate {
            layout: "TOP_BANNER".to_string(),
            header: "Welcome {{User.UserAttributes.FirstName}}".to_string(),
            ..InAppTemplate::default()
        };
        assert!(check(TemplateContent::InApp(in_app)).is_empty());
    }

    /// Oversized parts and malformed default substitutions are refused, each on its own path.
    #[test]
    fn sizes_and_defaults_are_limited() {
        let big = "x".repeat(MAX_PART_BYTES + 1);
        let defaults = BTreeMap::from([
            (String::new(), "x".to_string()),
            ("First Name".to_string(), "x".to_string()),
            ("Long".to_string(), "x".repeat(MAX_DEFAULT_VALUE_BYTES + 1)),
            (
                "User.UserAttributes.FirstName".to_string(),
                "friend".to_string(),
            ),
        ]);
        let violations = validate_template("", &sms(&big), &defaults);
        assert_eq!(
            fields(&violations),
            vec![
                "default_substitutions[\"\"]",
                "default_substitutions[\"First Name\"]",
                "default_substitutions[\"Long\"]",
                "sms.body",
            ]
        );
        assert!(violations[3].reason.contains("102400"), "{}", violations[3]);
    }

    /// Names of 1–128 letters, digits, '-' and '_' are taken; anything else is refused.
    #[test]
    fn template_names() {
        for good in ["welcome", "Order_Shipped-v2", "a", &"n".repeat(128)] {
            assert!(validate_name("name", good).is_empty(), "{good}");
        }
        for bad in ["", "has space", "ação", "a/b", &"n".repeat(129)] {
            assert_eq!(fields(&validate_name("name", bad)), vec!["name"], "{bad}");
        }
    }

    /// Push and in-app messages render their text parts and copy their settings, so the
    /// app receives personalized data with the action and layout unchanged.
    #[test]
    fn push_and_in_app_render_text_and_copy_settings() {
        let push = TemplateContent::Push(PushTemplate {
            title: "{{User.UserAttributes.FirstName}}, your {{Attributes.plan}} deal".to_string(),
            body: "Ends soon & more".to_string(),
            action: "DEEP_LINK".to_string(),
            url: "app://deals/{{Attributes.plan}}?u={{User.UserId}}".to_string(),
            image_url: String::new(),
            silent: false,
            raw_data: BTreeMap::from([("plan".to_string(), "{{Attributes.plan}}".to_string())]),
        });
        let RenderedMessage::Push(rendered) = render(&push, &context(&ana())).unwrap() else {
            panic!("expected a push");
        };
        assert_eq!(rendered.title, "Ana, your gold deal");
        assert_eq!(rendered.body, "Ends soon & more");
        assert_eq!(rendered.action, "DEEP_LINK");
        assert_eq!(rendered.url, "app://deals/gold?u=user-ana");
        assert_eq!(rendered.raw_data["plan"], "gold");

        let in_app = TemplateContent::InApp(InAppTemplate {
            layout: "CAROUSEL".to_string(),
            header: "Hi {{User.UserAttributes.FirstName}}".to_string(),
            body: String::new(),
            image_url: String::new(),
            button_text: "See {{Attributes.plan}}".to_string(),
            button_url: String::new(),
        });
        let RenderedMessage::InApp(rendered) = render(&in_app, &context(&ana())).unwrap() else {
            panic!("expected an in-app message");
        };
        assert_eq!(rendered.layout, "CAROUSEL");
        assert_eq!(rendered.header, "Hi Ana");
        assert_eq!(rendered.button_text, "See gold");
    }

    /// A compiled template can be shared by every channel worker thread of a node.
    #[test]
    fn compiled_templates_are_shared_across_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<CompiledTemplate>();
        shareable::<RenderContext>();
    }

    /// Clients may name types as the API prints them, in any case.
    #[test]
    fn template_type_names_round_trip() {
        for kind in [
            TemplateType::Email,
            TemplateType::Sms,
            TemplateType::Push,
            TemplateType::Voice,
            TemplateType::InApp,
        ] {
            assert_eq!(TemplateType::parse(kind.as_str()), Some(kind));
            assert_eq!(
                TemplateType::parse(&kind.as_str().to_lowercase()),
                Some(kind)
            );
        }
        assert_eq!(TemplateType::parse("IN_APP"), Some(TemplateType::InApp));
        assert_eq!(TemplateType::parse("FAX"), None);
    }

    /// Variables the equivalence test below draws from: every family, list positions,
    /// missing ones and a substitution.
    const SAMPLE_PATHS: &[&str] = &[
        "User.UserAttributes.FirstName",
        "User.UserAttributes.Nicknames",
        "User.UserId",
        "Attributes.plan",
        "Attributes.plan.[1]",
        "Attributes.missing",
        "Metrics.visits",
        "Metrics.spend",
        "Location.Latitude",
        "Location.City",
        "Demographic.Platform",
        "Address",
        "CohortId",
        "OptOut",
        "OrderId",
        "Missing.Thing",
    ];

    /// A template part from generated pieces: text, `{{path}}` or `{{{path}}}`.
    fn part_source(pieces: &[(String, usize, u8)]) -> String {
        pieces
            .iter()
            .map(|(text, path, form)| {
                let path = SAMPLE_PATHS[path % SAMPLE_PATHS.len()];
                match form % 3 {
                    0 => text.clone(),
                    1 => format!("{{{{{path}}}}}"),
                    _ => format!("{text}{{{{{{{path}}}}}}}"),
                }
            })
            .collect()
    }

    /// A campaign's usual template prints without Handlebars and needs only the variables it
    /// names; a `this` inside a block makes every variable needed.
    #[test]
    fn simple_templates_name_their_variables() {
        let content = email(
            "An offer for {{User.UserAttributes.FirstName}}",
            "<p>Your {{Attributes.plan}} plan</p>",
            "Your {{{Attributes.plan}}} plan",
        );
        let compiled = CompiledTemplate::compile(&content, &BTreeMap::new()).unwrap();
        assert_eq!(compiled.simple.len(), 3);
        assert_eq!(
            compiled.context_roots(),
            Some(&BTreeSet::from([
                "Attributes".to_string(),
                "User".to_string()
            ]))
        );
        let each = email("{{#each Attributes}}{{this}}{{/each}}", "", "");
        let compiled = CompiledTemplate::compile(&each, &BTreeMap::new()).unwrap();
        assert_eq!(compiled.context_roots(), None);
    }

    /// Templates with blocks and helpers: not simple, but their variables are known.
    const BLOCK_PARTS: &[&str] = &[
        "{{#if Attributes.plan}}{{User.UserId}}{{else}}{{Address}}{{/if}}",
        "{{default User.UserAttributes.FirstName \"friend\"}} {{len Attributes.plan}} {{lookup Location \"City\"}}",
        "{{#each Attributes}}{{@key}}={{this}} {{/each}}",
        "{{#with User}}{{UserId}}{{/with}} {{#unless (eq Metrics.visits 3)}}x{{/unless}}",
    ];

    proptest! {
        /// Parts of only text and variables print without Handlebars, and a context holding
        /// only the top-level variables a template reads: either way the text is the same as
        /// Handlebars prints from the full context, escaping and defaults included.
        #[test]
        fn fast_parts_render_like_handlebars(
            subject in prop::collection::vec(("[^{}\\\\]{0,6}", any::<usize>(), any::<u8>()), 0..6),
            html in prop::collection::vec(("[^{}\\\\]{0,6}", any::<usize>(), any::<u8>()), 0..6),
            block in prop::option::of(0..BLOCK_PARTS.len()),
            values in prop::collection::vec(any::<String>(), 0..3),
            defaulted in prop::collection::btree_map(0..SAMPLE_PATHS.len(), "[a-z<&\"]{0,4}", 0..4),
            order in prop::option::of("[a-z<]{0,4}"),
        ) {
            let mut endpoint = ana();
            endpoint.attributes.insert("plan".to_string(), values.clone());
            endpoint.user.user_attributes.insert("FirstName".to_string(), values);
            let text = match block {
                Some(block) => BLOCK_PARTS[block].to_string(),
                None => part_source(&subject),
            };
            let content = email(&part_source(&subject), &part_source(&html), &text);
            let defaults: BTreeMap<String, String> = defaulted
                .into_iter()
                .map(|(path, text)| (SAMPLE_PATHS[path].to_string(), text))
                .collect();
            let substitutions: BTreeMap<String, Vec<String>> =
                order.into_iter().map(|o| ("OrderId".to_string(), vec![o])).collect();
            let compiled = CompiledTemplate::compile(&content, &defaults).unwrap();
            let full = RenderContext::for_endpoint(&endpoint, &substitutions, &BTreeMap::new());
            let slim = RenderContext::for_endpoint_with(
                &endpoint,
                &substitutions,
                &BTreeMap::new(),
                compiled.context_roots(),
            );
            prop_assert_eq!(compiled.simple.len(), if block.is_some() { 2 } else { 3 });
            let by_handlebars = compiled.render_parts(&full, false).unwrap();
            let fast = compiled.render_parts(&slim, true).unwrap();
            prop_assert_eq!(fast, by_handlebars);
        }

        /// Whatever values an endpoint's attributes hold (markup, braces, unicode, empty
        /// lists), a valid template renders without error, and an attribute value is printed
        /// exactly as stored outside the HTML part.
        #[test]
        fn rendering_never_fails_for_any_attribute_values(
            attributes in prop::collection::btree_map(
                "[A-Za-z][A-Za-z0-9_]{0,8}",
                prop::collection::vec(any::<String>(), 0..3),
                0..5,
            ),
            first_name in prop::collection::vec(any::<String>(), 0..3),
            metric in any::<f64>(),
        ) {
            let mut endpoint = ana();
            endpoint.attributes = attributes;
            endpoint.attributes.insert("plan".to_string(), first_name.clone());
            endpoint.metrics.insert("visits".to_string(), metric);
            endpoint.user.user_attributes.insert("FirstName".to_string(), first_name.clone());
            let content = email(
                "Hi {{default User.UserAttributes.FirstName \"friend\"}}",
                "<p>{{User.UserAttributes.FirstName}} {{Attributes.plan.[1]}}</p>\
                 {{#each Attributes}}{{@key}}={{this}} {{/each}}\
                 {{#if (gt Metrics.visits 2)}}loyal{{/if}}",
                "{{User.UserAttributes.FirstName}}|{{Metrics.visits}}|{{Attributes.missing}}",
            );
            let compiled = CompiledTemplate::compile(&content, &BTreeMap::new()).unwrap();
            let rendered = compiled.render(&context(&endpoint));
            prop_assert!(rendered.is_ok(), "{rendered:?}");
            let Ok(RenderedMessage::Email(rendered)) = rendered else { unreachable!() };
            let first = first_name.first().map(String::as_str).unwrap_or_default();
            let expected_prefix = format!("{first}|");
            prop_assert!(rendered.text_part.starts_with(&expected_prefix), "{rendered:?}");
        }

        /// Text with no `{{` is printed exactly as written in every part, including the
        /// email HTML part: templates never mangle a marketer's copy.
        #[test]
        fn literal_text_renders_unchanged(text in any::<String>().prop_filter("no mustache", |t| !t.contains("{{"))) {
            let content = email(&text, &text, &text);
            let rendered = render(&content, &context(&ana())).unwrap();
            prop_assert_eq!(
                rendered,
                RenderedMessage::Email(EmailTemplate {
                    subject: text.clone(),
                    html_part: text.clone(),
                    text_part: text.clone(),
                })
            );
            let rendered = render(&sms(&text), &context(&ana())).unwrap();
            prop_assert_eq!(rendered, RenderedMessage::Sms(SmsTemplate { body: text }));
        }
    }
}
