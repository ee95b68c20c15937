//! `herald template ...`: message templates per channel type, with versions.

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::templates_client::TemplatesClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::output::{Table, print_json, status_error};
use super::{TemplateCommand, TemplateContentArgs, TemplateRefArgs};

/// Runs a template command.
pub async fn run(channel: Channel, command: TemplateCommand, json: bool) -> anyhow::Result<()> {
    let mut client = TemplatesClient::new(channel);
    match command {
        TemplateCommand::Create(args) => {
            let kind = args.kind()?;
            let fields = Some(args.fields()?);
            let answer = match kind.as_str() {
                "EMAIL" => {
                    client
                        .create_email_template(proto::CreateEmailTemplateRequest {
                            fields,
                            template: Some(args.email()?),
                        })
                        .await
                }
                "SMS" => {
                    client
                        .create_sms_template(proto::CreateSmsTemplateRequest {
                            fields,
                            template: Some(args.sms()?),
                        })
                        .await
                }
                "PUSH" => {
                    client
                        .create_push_template(proto::CreatePushTemplateRequest {
                            fields,
                            template: Some(args.push()?),
                        })
                        .await
                }
                "VOICE" => {
                    client
                        .create_voice_template(proto::CreateVoiceTemplateRequest {
                            fields,
                            template: Some(args.voice()?),
                        })
                        .await
                }
                _ => {
                    client
                        .create_in_app_template(proto::CreateInAppTemplateRequest {
                            fields,
                            template: Some(args.in_app()?),
                        })
                        .await
                }
            };
            show(&answer.map_err(status_error)?.into_inner(), json);
        }
        TemplateCommand::Update(args) => {
            let kind = args.kind()?;
            let fields = Some(args.fields()?);
            let create_new_version = args.new_version;
            let answer = match kind.as_str() {
                "EMAIL" => {
                    client
                        .update_email_template(proto::UpdateEmailTemplateRequest {
                            fields,
                            template: Some(args.email()?),
                            create_new_version,
                        })
                        .await
                }
                "SMS" => {
                    client
                        .update_sms_template(proto::UpdateSmsTemplateRequest {
                            fields,
                            template: Some(args.sms()?),
                            create_new_version,
                        })
                        .await
                }
                "PUSH" => {
                    client
                        .update_push_template(proto::UpdatePushTemplateRequest {
                            fields,
                            template: Some(args.push()?),
                            create_new_version,
                        })
                        .await
                }
                "VOICE" => {
                    client
                        .update_voice_template(proto::UpdateVoiceTemplateRequest {
                            fields,
                            template: Some(args.voice()?),
                            create_new_version,
                        })
                        .await
                }
                _ => {
                    client
                        .update_in_app_template(proto::UpdateInAppTemplateRequest {
                            fields,
                            template: Some(args.in_app()?),
                            create_new_version,
                        })
                        .await
                }
            };
            show(&answer.map_err(status_error)?.into_inner(), json);
        }
        TemplateCommand::Get(args) => {
            let request = proto::GetTemplateRequest {
                project_id: args.project.clone(),
                template_name: args.name.clone(),
                version: args.version.unwrap_or(0),
            };
            let answer = match args.kind()?.as_str() {
                "EMAIL" => client.get_email_template(request).await,
                "SMS" => client.get_sms_template(request).await,
                "PUSH" => client.get_push_template(request).await,
                "VOICE" => client.get_voice_template(request).await,
                _ => client.get_in_app_template(request).await,
            };
            show(&answer.map_err(status_error)?.into_inner(), json);
        }
        TemplateCommand::Delete(args) => {
            let request = proto::DeleteTemplateRequest {
                project_id: args.project.clone(),
                template_name: args.name.clone(),
                version: args.version.unwrap_or(0),
            };
            let answer = match args.kind()?.as_str() {
                "EMAIL" => client.delete_email_template(request).await,
                "SMS" => client.delete_sms_template(request).await,
                "PUSH" => client.delete_push_template(request).await,
                "VOICE" => client.delete_voice_template(request).await,
                _ => client.delete_in_app_template(request).await,
            };
            let deleted = answer.map_err(status_error)?.into_inner().versions_deleted;
            if json {
                print_json(&json!({"versions_deleted": deleted}));
            } else {
                println!("deleted {deleted} version(s)");
            }
        }
        TemplateCommand::List {
            project,
            kind,
            prefix,
        } => {
            let list = client
                .list_templates(proto::ListTemplatesRequest {
                    project_id: project,
                    prefix: prefix.unwrap_or_default(),
                    template_type: kind.map(|k| k.to_ascii_uppercase()).unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show_list(&list.templates, json);
        }
        TemplateCommand::Versions(args) => {
            let list = client
                .list_template_versions(proto::ListTemplateVersionsRequest {
                    project_id: args.project.clone(),
                    template_name: args.name.clone(),
                    template_type: args.kind()?,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show_list(&list.templates, json);
        }
        TemplateCommand::Activate(args) => {
            let version = args.version.context("--version is required")?;
            let answer = client
                .update_template_active_version(proto::UpdateTemplateActiveVersionRequest {
                    project_id: args.project.clone(),
                    template_name: args.name.clone(),
                    template_type: args.kind()?,
                    version,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer, json);
        }
    }
    Ok(())
}

/// Reads `@FILE` arguments from the file; other text is used as written.
pub fn text_or_file(value: &Option<String>) -> anyhow::Result<String> {
    match value.as_deref() {
        None => Ok(String::new()),
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read template part {path}")),
            None => Ok(text.to_string()),
        },
    }
}

impl TemplateRefArgs {
    fn kind(&self) -> anyhow::Result<String> {
        normalize_kind(&self.kind)
    }
}

fn normalize_kind(kind: &str) -> anyhow::Result<String> {
    let upper = kind.to_ascii_uppercase().replace('_', "");
    match upper.as_str() {
        "EMAIL" | "SMS" | "PUSH" | "VOICE" | "INAPP" => Ok(upper),
        _ => anyhow::bail!("unknown template type {kind:?} (EMAIL, SMS, PUSH, VOICE, INAPP)"),
    }
}

impl TemplateContentArgs {
    fn kind(&self) -> anyhow::Result<String> {
        normalize_kind(&self.kind)
    }

    fn fields(&self) -> anyhow::Result<proto::TemplateFields> {
        Ok(proto::TemplateFields {
            project_id: self.project.clone(),
            template_name: self.name.clone(),
            default_substitutions: self.defaults.iter().cloned().collect(),
            description: self.description.clone().unwrap_or_default(),
        })
    }

    fn email(&self) -> anyhow::Result<proto::EmailTemplate> {
        Ok(proto::EmailTemplate {
            subject: text_or_file(&self.subject)?,
            html_part: text_or_file(&self.html)?,
            text_part: text_or_file(&self.text)?,
        })
    }

    fn sms(&self) -> anyhow::Result<proto::SmsTemplate> {
        Ok(proto::SmsTemplate {
            body: text_or_file(&self.body)?,
        })
    }

    fn push(&self) -> anyhow::Result<proto::PushTemplate> {
        Ok(proto::PushTemplate {
            title: text_or_file(&self.title)?,
            body: text_or_file(&self.body)?,
            action: self.action.clone().unwrap_or_default(),
            url: self.url.clone().unwrap_or_default(),
            image_url: self.image_url.clone().unwrap_or_default(),
            silent: self.silent,
            raw_data: Default::default(),
        })
    }

    fn voice(&self) -> anyhow::Result<proto::VoiceTemplate> {
        Ok(proto::VoiceTemplate {
            body: text_or_file(&self.body)?,
            language_code: self.language_code.clone().unwrap_or_default(),
            voice_id: self.voice_id.clone().unwrap_or_default(),
        })
    }

    fn in_app(&self) -> anyhow::Result<proto::InAppTemplate> {
        Ok(proto::InAppTemplate {
            layout: self.layout.clone().unwrap_or_default(),
            header: text_or_file(&self.title)?,
            body: text_or_file(&self.body)?,
            image_url: self.image_url.clone().unwrap_or_default(),
            button_text: String::new(),
            button_url: self.url.clone().unwrap_or_default(),
        })
    }
}

/// A template as JSON.
pub fn template_json(template: &proto::TemplateResponse) -> Value {
    let content = match &template.content {
        Some(proto::template_response::Content::Email(t)) => {
            json!({"subject": t.subject, "html_part": t.html_part, "text_part": t.text_part})
        }
        Some(proto::template_response::Content::Sms(t)) => json!({"body": t.body}),
        Some(proto::template_response::Content::Push(t)) => {
            json!({"title": t.title, "body": t.body, "action": t.action, "url": t.url, "image_url": t.image_url, "silent": t.silent})
        }
        Some(proto::template_response::Content::Voice(t)) => {
            json!({"body": t.body, "language_code": t.language_code, "voice_id": t.voice_id})
        }
        Some(proto::template_response::Content::InApp(t)) => {
            json!({"layout": t.layout, "header": t.header, "body": t.body})
        }
        None => Value::Null,
    };
    json!({
        "project_id": template.project_id,
        "template_name": template.template_name,
        "template_type": template.template_type,
        "version": template.version,
        "active_version": template.active_version,
        "default_substitutions": template.default_substitutions,
        "description": template.description,
        "creation_date": template.creation_date,
        "last_modified_date": template.last_modified_date,
        "content": content,
    })
}

fn show(template: &proto::TemplateResponse, json: bool) {
    if json {
        print_json(&template_json(template));
        return;
    }
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let value = template_json(template);
    for key in [
        "template_name",
        "template_type",
        "version",
        "active_version",
        "description",
        "last_modified_date",
    ] {
        table.push(vec![
            key.to_string(),
            value[key].to_string().trim_matches('"').to_string(),
        ]);
    }
    if let Value::Object(content) = &value["content"] {
        for (key, part) in content {
            table.push(vec![
                key.clone(),
                part.to_string().trim_matches('"').replace("\\n", " "),
            ]);
        }
    }
    for (key, default) in &template.default_substitutions {
        table.push(vec![format!("default.{key}"), default.clone()]);
    }
    print!("{}", table.render());
}

fn show_list(templates: &[proto::TemplateResponse], json: bool) {
    if json {
        print_json(&Value::Array(templates.iter().map(template_json).collect()));
        return;
    }
    let mut table = Table::new(&["NAME", "TYPE", "VERSION", "ACTIVE", "MODIFIED"]);
    for template in templates {
        table.push(vec![
            template.template_name.clone(),
            template.template_type.clone(),
            template.version.to_string(),
            template.active_version.to_string(),
            template.last_modified_date.clone(),
        ]);
    }
    print!("{}", table.render());
}
