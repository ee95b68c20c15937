//! `herald.v1.Templates`: create, update, read, delete and list message templates per type.

use herald_proto::v1 as pb;
use herald_proto::v1::templates_server::Templates;
use tonic::{Request, Response, Status};

use super::status::{invalid_argument, to_status};
use super::{ClusterHandle, check_ids, observed};
use crate::domain::FieldViolation;
use crate::domain::template::{
    self, EmailTemplate, InAppTemplate, PushTemplate, SmsTemplate, Template, TemplateContent,
    TemplateType, VoiceTemplate,
};
use crate::raft::command::{TemplateHead, TemplateWrite};

/// The Templates service.
pub struct TemplatesApi {
    cluster: ClusterHandle,
}

impl TemplatesApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

/// Inline email content of a request.
pub fn email_from(t: pb::EmailTemplate) -> TemplateContent {
    TemplateContent::Email(EmailTemplate {
        subject: t.subject,
        html_part: t.html_part,
        text_part: t.text_part,
    })
}

/// Inline sms content of a request.
pub fn sms_from(t: pb::SmsTemplate) -> TemplateContent {
    TemplateContent::Sms(SmsTemplate { body: t.body })
}

/// Inline push content of a request.
pub fn push_from(t: pb::PushTemplate) -> TemplateContent {
    TemplateContent::Push(PushTemplate {
        title: t.title,
        body: t.body,
        action: t.action,
        url: t.url,
        image_url: t.image_url,
        silent: t.silent,
        raw_data: t.raw_data.into_iter().collect(),
    })
}

/// Inline voice content of a request.
pub fn voice_from(t: pb::VoiceTemplate) -> TemplateContent {
    TemplateContent::Voice(VoiceTemplate {
        body: t.body,
        language_code: t.language_code,
        voice_id: t.voice_id,
    })
}

/// Inline in-app content of a request.
pub fn in_app_from(t: pb::InAppTemplate) -> TemplateContent {
    TemplateContent::InApp(InAppTemplate {
        layout: t.layout,
        header: t.header,
        body: t.body,
        image_url: t.image_url,
        button_text: t.button_text,
        button_url: t.button_url,
    })
}

/// A template as the API answers it.
pub fn template_to_proto(template: &Template, head: &TemplateHead) -> pb::TemplateResponse {
    let content = match &template.content {
        TemplateContent::Email(t) => pb::template_response::Content::Email(pb::EmailTemplate {
            subject: t.subject.clone(),
            html_part: t.html_part.clone(),
            text_part: t.text_part.clone(),
        }),
        TemplateContent::Sms(t) => pb::template_response::Content::Sms(pb::SmsTemplate {
            body: t.body.clone(),
        }),
        TemplateContent::Push(t) => pb::template_response::Content::Push(pb::PushTemplate {
            title: t.title.clone(),
            body: t.body.clone(),
            action: t.action.clone(),
            url: t.url.clone(),
            image_url: t.image_url.clone(),
            silent: t.silent,
            raw_data: t.raw_data.clone().into_iter().collect(),
        }),
        TemplateContent::Voice(t) => pb::template_response::Content::Voice(pb::VoiceTemplate {
            body: t.body.clone(),
            language_code: t.language_code.clone(),
            voice_id: t.voice_id.clone(),
        }),
        TemplateContent::InApp(t) => pb::template_response::Content::InApp(pb::InAppTemplate {
            layout: t.layout.clone(),
            header: t.header.clone(),
            body: t.body.clone(),
            image_url: t.image_url.clone(),
            button_text: t.button_text.clone(),
            button_url: t.button_url.clone(),
        }),
    };
    pb::TemplateResponse {
        project_id: template.project_id.clone(),
        template_name: template.name.clone(),
        template_type: template.content.template_type().as_str().to_string(),
        version: template.version,
        active_version: head.active,
        default_substitutions: template.default_substitutions.clone().into_iter().collect(),
        description: template.description.clone(),
        creation_date: template.creation_date.clone(),
        last_modified_date: template.last_modified_date.clone(),
        content: Some(content),
    }
}

fn parse_type(field: &str, value: &str) -> Result<Option<TemplateType>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    TemplateType::parse(value).map(Some).ok_or_else(|| {
        invalid_argument(&[FieldViolation::new(
            field,
            format!("{value:?} is not EMAIL, SMS, PUSH, VOICE or INAPP"),
        )])
    })
}

fn required_type(field: &str, value: &str) -> Result<TemplateType, Status> {
    parse_type(field, value)?
        .ok_or_else(|| invalid_argument(&[FieldViolation::new(field, "is required")]))
}

impl TemplatesApi {
    /// Validates and writes one template version.
    async fn write(
        &self,
        fields: Option<pb::TemplateFields>,
        content: Option<TemplateContent>,
        write: TemplateWrite,
    ) -> Result<pb::TemplateResponse, Status> {
        let cluster = self.cluster.get()?;
        let fields = fields.unwrap_or_default();
        check_ids(
            &[("fields.project_id", &fields.project_id)],
            cluster.limits(),
        )?;
        let mut violations = template::validate_name("fields.template_name", &fields.template_name);
        let defaults = fields.default_substitutions.into_iter().collect();
        match &content {
            Some(content) => {
                violations.extend(template::validate_template("template", content, &defaults))
            }
            None => violations.push(FieldViolation::new("template", "is required")),
        }
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let template = Template {
            project_id: fields.project_id,
            name: fields.template_name,
            version: 0,
            content: content.expect("checked above"),
            default_substitutions: defaults,
            description: fields.description,
            creation_date: String::new(),
            last_modified_date: String::new(),
        };
        let (template, head) = cluster
            .put_template(template, write)
            .await
            .map_err(to_status)?;
        Ok(template_to_proto(&template, &head))
    }

    async fn get(
        &self,
        template_type: TemplateType,
        request: pb::GetTemplateRequest,
    ) -> Result<pb::TemplateResponse, Status> {
        let cluster = self.cluster.get()?;
        check_ids(
            &[
                ("project_id", &request.project_id),
                ("template_name", &request.template_name),
            ],
            cluster.limits(),
        )?;
        let version = (request.version != 0).then_some(request.version);
        let (template, head) = cluster
            .get_template(
                &request.project_id,
                template_type,
                &request.template_name,
                version,
            )
            .await
            .map_err(to_status)?;
        Ok(template_to_proto(&template, &head))
    }

    async fn delete(
        &self,
        template_type: TemplateType,
        request: pb::DeleteTemplateRequest,
    ) -> Result<pb::DeleteTemplateResponse, Status> {
        let cluster = self.cluster.get()?;
        check_ids(
            &[
                ("project_id", &request.project_id),
                ("template_name", &request.template_name),
            ],
            cluster.limits(),
        )?;
        let version = (request.version != 0).then_some(request.version);
        let versions_deleted = cluster
            .delete_template(
                &request.project_id,
                template_type,
                &request.template_name,
                version,
            )
            .await
            .map_err(to_status)?;
        Ok(pb::DeleteTemplateResponse { versions_deleted })
    }
}

/// The service impl: four RPCs per template type, generated, plus the listing RPCs.
macro_rules! templates_service {
    ($( ($kind:expr, $convert:ident,
         $create:ident, $create_req:ty, $create_name:literal,
         $update:ident, $update_req:ty, $update_name:literal,
         $get:ident, $get_name:literal,
         $delete:ident, $delete_name:literal) ),* ; $($rest:item)*) => {
        #[tonic::async_trait]
        impl Templates for TemplatesApi {
            $(
            async fn $create(&self, request: Request<$create_req>) -> Result<Response<pb::TemplateResponse>, Status> {
                observed($create_name, async {
                    let request = request.into_inner();
                    self.write(request.fields, request.template.map($convert), TemplateWrite::Create).await
                })
                .await
            }

            async fn $update(&self, request: Request<$update_req>) -> Result<Response<pb::TemplateResponse>, Status> {
                observed($update_name, async {
                    let request = request.into_inner();
                    let write = if request.create_new_version {
                        TemplateWrite::NewVersion
                    } else {
                        TemplateWrite::ReplaceLatest
                    };
                    self.write(request.fields, request.template.map($convert), write).await
                })
                .await
            }

            async fn $get(&self, request: Request<pb::GetTemplateRequest>) -> Result<Response<pb::TemplateResponse>, Status> {
                observed($get_name, self.get($kind, request.into_inner())).await
            }

            async fn $delete(
                &self,
                request: Request<pb::DeleteTemplateRequest>,
            ) -> Result<Response<pb::DeleteTemplateResponse>, Status> {
                observed($delete_name, self.delete($kind, request.into_inner())).await
            }
            )*
            $($rest)*
        }
    };
}

templates_service! {
    (TemplateType::Email, email_from,
        create_email_template, pb::CreateEmailTemplateRequest, "CreateEmailTemplate",
        update_email_template, pb::UpdateEmailTemplateRequest, "UpdateEmailTemplate",
        get_email_template, "GetEmailTemplate",
        delete_email_template, "DeleteEmailTemplate"),
    (TemplateType::Sms, sms_from,
        create_sms_template, pb::CreateSmsTemplateRequest, "CreateSmsTemplate",
        update_sms_template, pb::UpdateSmsTemplateRequest, "UpdateSmsTemplate",
        get_sms_template, "GetSmsTemplate",
        delete_sms_template, "DeleteSmsTemplate"),
    (TemplateType::Push, push_from,
        create_push_template, pb::CreatePushTemplateRequest, "CreatePushTemplate",
        update_push_template, pb::UpdatePushTemplateRequest, "UpdatePushTemplate",
        get_push_template, "GetPushTemplate",
        delete_push_template, "DeletePushTemplate"),
    (TemplateType::Voice, voice_from,
        create_voice_template, pb::CreateVoiceTemplateRequest, "CreateVoiceTemplate",
        update_voice_template, pb::UpdateVoiceTemplateRequest, "UpdateVoiceTemplate",
        get_voice_template, "GetVoiceTemplate",
        delete_voice_template, "DeleteVoiceTemplate"),
    (TemplateType::InApp, in_app_from,
        create_in_app_template, pb::CreateInAppTemplateRequest, "CreateInAppTemplate",
        update_in_app_template, pb::UpdateInAppTemplateRequest, "UpdateInAppTemplate",
        get_in_app_template, "GetInAppTemplate",
        delete_in_app_template, "DeleteInAppTemplate");

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        observed("ListTemplates", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let template_type = parse_type("template_type", &request.template_type)?;
            let templates = cluster
                .list_templates(&request.project_id, &request.prefix, template_type)
                .await
                .map_err(to_status)?;
            Ok(pb::ListTemplatesResponse {
                templates: templates.iter().map(|(t, h)| template_to_proto(t, h)).collect(),
            })
        })
        .await
    }

    async fn list_template_versions(
        &self,
        request: Request<pb::ListTemplateVersionsRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        observed("ListTemplateVersions", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[("project_id", &request.project_id), ("template_name", &request.template_name)],
                cluster.limits(),
            )?;
            let template_type = required_type("template_type", &request.template_type)?;
            let versions = cluster
                .template_versions(&request.project_id, template_type, &request.template_name)
                .await
                .map_err(to_status)?;
            Ok(pb::ListTemplatesResponse {
                templates: versions.iter().map(|(t, h)| template_to_proto(t, h)).collect(),
            })
        })
        .await
    }

    async fn update_template_active_version(
        &self,
        request: Request<pb::UpdateTemplateActiveVersionRequest>,
    ) -> Result<Response<pb::TemplateResponse>, Status> {
        observed("UpdateTemplateActiveVersion", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[("project_id", &request.project_id), ("template_name", &request.template_name)],
                cluster.limits(),
            )?;
            let template_type = required_type("template_type", &request.template_type)?;
            if request.version == 0 {
                return Err(invalid_argument(&[FieldViolation::new("version", "must be 1 or more")]));
            }
            let (template, head) = cluster
                .set_active_template(&request.project_id, template_type, &request.template_name, request.version)
                .await
                .map_err(to_status)?;
            Ok(template_to_proto(&template, &head))
        })
        .await
    }
}
