//! `herald.v1.Segments`: create, version, read, list, delete and estimate dynamic and
//! imported segments.
//!
//! The conversions both ways live here too ([`definition_from_proto`],
//! [`definition_to_proto`]) because the CLI builds its requests with them.

use std::collections::{BTreeMap, HashMap};

use herald_proto::v1 as pb;
use herald_proto::v1::segments_server::Segments;
use tonic::{Request, Response, Status};

use super::status::{invalid_argument, to_status, under};
use super::{ClusterHandle, check_ids, observed};
use crate::domain::FieldViolation;
use crate::domain::endpoint::validate_id;
use crate::domain::limits::Limits;
use crate::domain::segment::{
    AttributeDimension, AttributeKind, Combination, GpsPoint, MetricComparison, MetricDimension,
    Recency, RecencyDuration, RecencyKind, SegmentDefinition, SegmentDemographics,
    SegmentDimensions, SegmentGroup, SegmentGroupList, SegmentLocation, SegmentRecord,
    SegmentReference, SegmentRule, SetDimension, SetKind, SourceCombination, WireName, parse_wire,
};
use crate::domain::violation::join;

/// The Segments service.
pub struct SegmentsApi {
    cluster: ClusterHandle,
}

impl SegmentsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

/// The segment a request carries at `field`, with every problem reported at once: operator
/// names that are not known, a missing rule, and all that [`SegmentDefinition::validate`]
/// finds.
pub fn definition_from_proto(
    field: &str,
    segment: Option<pb::SegmentDefinition>,
) -> Result<SegmentDefinition, Vec<FieldViolation>> {
    let Some(segment) = segment else {
        return Err(vec![FieldViolation::new(field, "is required")]);
    };
    let (definition, mut violations) = read_definition(field, segment.name, segment.rule);
    violations.extend(definition.validate(field));
    if violations.is_empty() {
        Ok(definition)
    } else {
        Err(violations)
    }
}

/// The definition an answer carries, read as stored: only operator names this build does not
/// know are refused (stored segments are not validated again, so an older segment that a
/// newer rule would refuse still prints).
pub fn definition_from_response(
    segment: &pb::SegmentResponse,
) -> Result<SegmentDefinition, Vec<FieldViolation>> {
    let rule = segment.rule.clone().map(|rule| match rule {
        pb::segment_response::Rule::Dimensions(dimensions) => {
            pb::segment_definition::Rule::Dimensions(dimensions)
        }
        pb::segment_response::Rule::SegmentGroups(list) => {
            pb::segment_definition::Rule::SegmentGroups(list)
        }
        pb::segment_response::Rule::Imported(imported) => {
            pb::segment_definition::Rule::Imported(imported)
        }
    });
    let (definition, violations) = read_definition("segment", segment.name.clone(), rule);
    if violations.is_empty() {
        Ok(definition)
    } else {
        Err(violations)
    }
}

/// Reads a name and rule into a definition, with the operator names it could not read and
/// a missing rule; does not validate.
fn read_definition(
    field: &str,
    name: String,
    rule: Option<pb::segment_definition::Rule>,
) -> (SegmentDefinition, Vec<FieldViolation>) {
    let mut reader = ProtoReader::default();
    let rule = match rule {
        Some(pb::segment_definition::Rule::Dimensions(dimensions)) => {
            SegmentRule::Dimensions(reader.dimensions(&join(field, "dimensions"), dimensions))
        }
        Some(pb::segment_definition::Rule::SegmentGroups(list)) => {
            SegmentRule::Groups(reader.groups(&join(field, "segment_groups"), list))
        }
        Some(pb::segment_definition::Rule::Imported(imported)) => SegmentRule::Imported {
            import_job_id: imported.import_job_id,
        },
        None => {
            reader.violations.push(FieldViolation::new(
                join(field, "rule"),
                "must be dimensions, segment_groups or imported",
            ));
            SegmentRule::Dimensions(SegmentDimensions::default())
        }
    };
    (SegmentDefinition { name, rule }, reader.violations)
}

/// Reads proto messages into domain values, recording bad operator names as it goes.
#[derive(Default)]
struct ProtoReader {
    violations: Vec<FieldViolation>,
}

impl ProtoReader {
    /// The operator named `text` at `field`; an empty text is `default`, or a violation when
    /// the operator is required.
    ///
    /// After a violation it answers `default` or the first variant, which never adds a
    /// violation of its own in validation (INCLUSIVE, ALL, GREATER_THAN…): the caller goes on
    /// so that one answer lists every problem.
    fn operator<E: WireName>(&mut self, field: &str, text: &str, default: Option<E>) -> E {
        let fallback = default.unwrap_or(E::ALL[0]);
        if text.is_empty() {
            if default.is_none() {
                let names: Vec<&str> = E::ALL.iter().map(|variant| variant.as_str()).collect();
                self.violations.push(FieldViolation::new(
                    field,
                    format!("is required: one of {}", names.join(", ")),
                ));
            }
            return fallback;
        }
        parse_wire(field, text, &mut self.violations).unwrap_or(fallback)
    }

    fn set(&mut self, field: &str, set: Option<pb::SetDimension>) -> Option<SetDimension> {
        let set = set?;
        Some(SetDimension {
            kind: self.operator(&join(field, "kind"), &set.kind, Some(SetKind::Inclusive)),
            values: set.values,
        })
    }

    fn attributes(
        &mut self,
        field: &str,
        attributes: HashMap<String, pb::AttributeDimension>,
    ) -> BTreeMap<String, AttributeDimension> {
        // Sorted first, so violations come in the order validation reports them.
        let sorted: BTreeMap<String, pb::AttributeDimension> = attributes.into_iter().collect();
        sorted
            .into_iter()
            .map(|(name, attribute)| {
                let kind = self.operator(
                    &format!("{field}[{name:?}].kind"),
                    &attribute.kind,
                    Some(AttributeKind::Inclusive),
                );
                let dimension = AttributeDimension {
                    kind,
                    values: attribute.values,
                };
                (name, dimension)
            })
            .collect()
    }

    fn metrics(
        &mut self,
        field: &str,
        metrics: HashMap<String, pb::MetricDimension>,
    ) -> BTreeMap<String, MetricDimension> {
        let sorted: BTreeMap<String, pb::MetricDimension> = metrics.into_iter().collect();
        sorted
            .into_iter()
            .map(|(name, metric)| {
                let comparison = self.operator::<MetricComparison>(
                    &format!("{field}[{name:?}].comparison"),
                    &metric.comparison,
                    None,
                );
                let dimension = MetricDimension {
                    comparison,
                    value: metric.value,
                    upper: metric.upper,
                };
                (name, dimension)
            })
            .collect()
    }

    fn dimensions(&mut self, field: &str, dimensions: pb::SegmentDimensions) -> SegmentDimensions {
        let recency = dimensions.recency.map(|recency| {
            let recency_field = join(field, "recency");
            Recency {
                duration: self.operator::<RecencyDuration>(
                    &join(&recency_field, "duration"),
                    &recency.duration,
                    None,
                ),
                kind: self.operator::<RecencyKind>(
                    &join(&recency_field, "kind"),
                    &recency.kind,
                    None,
                ),
            }
        });
        let demographic = dimensions.demographic.unwrap_or_default();
        let demographic_field = join(field, "demographic");
        let at = |name: &str| join(&demographic_field, name);
        let demographic = SegmentDemographics {
            app_version: self.set(&at("app_version"), demographic.app_version),
            channel: self.set(&at("channel"), demographic.channel),
            device_type: self.set(&at("device_type"), demographic.device_type),
            make: self.set(&at("make"), demographic.make),
            model: self.set(&at("model"), demographic.model),
            platform: self.set(&at("platform"), demographic.platform),
        };
        let location = dimensions.location.unwrap_or_default();
        let location = SegmentLocation {
            country: self.set(&join(field, "location.country"), location.country),
            gps_point: location.gps_point.map(|point| GpsPoint {
                latitude: point.latitude,
                longitude: point.longitude,
                range_km: point.range_km,
            }),
        };
        SegmentDimensions {
            recency,
            demographic,
            location,
            attributes: self.attributes(&join(field, "attributes"), dimensions.attributes),
            metrics: self.metrics(&join(field, "metrics"), dimensions.metrics),
            user_attributes: self
                .attributes(&join(field, "user_attributes"), dimensions.user_attributes),
        }
    }

    fn groups(&mut self, field: &str, list: pb::SegmentGroupList) -> SegmentGroupList {
        let include = self.operator(
            &join(field, "include"),
            &list.include,
            Some(Combination::All),
        );
        let groups = list
            .groups
            .into_iter()
            .enumerate()
            .map(|(i, group)| {
                let group_field = format!("{field}.groups[{i}]");
                let dimensions = group
                    .dimensions
                    .into_iter()
                    .enumerate()
                    .map(|(j, dimensions)| {
                        self.dimensions(&format!("{group_field}.dimensions[{j}]"), dimensions)
                    })
                    .collect();
                SegmentGroup {
                    dimensions,
                    dimension_type: self.operator(
                        &join(&group_field, "dimension_type"),
                        &group.dimension_type,
                        Some(Combination::All),
                    ),
                    source_segments: group
                        .source_segments
                        .into_iter()
                        .map(|reference| SegmentReference {
                            id: reference.id,
                            version: (reference.version != 0).then_some(reference.version),
                        })
                        .collect(),
                    source_type: self.operator(
                        &join(&group_field, "source_type"),
                        &group.source_type,
                        Some(SourceCombination::All),
                    ),
                    segment_type: self.operator(
                        &join(&group_field, "segment_type"),
                        &group.segment_type,
                        Some(SetKind::Inclusive),
                    ),
                }
            })
            .collect();
        SegmentGroupList { include, groups }
    }
}

fn set_to_proto(set: &Option<SetDimension>) -> Option<pb::SetDimension> {
    set.as_ref().map(|set| pb::SetDimension {
        kind: set.kind.as_str().to_string(),
        values: set.values.clone(),
    })
}

/// Attribute conditions as the API shows them (segments and event filters).
pub(crate) fn attributes_to_proto(
    attributes: &BTreeMap<String, AttributeDimension>,
) -> HashMap<String, pb::AttributeDimension> {
    attributes
        .iter()
        .map(|(name, attribute)| {
            let dimension = pb::AttributeDimension {
                kind: attribute.kind.as_str().to_string(),
                values: attribute.values.clone(),
            };
            (name.clone(), dimension)
        })
        .collect()
}

/// Metric comparisons as the API shows them (segments and event filters).
pub(crate) fn metrics_to_proto(
    metrics: &BTreeMap<String, MetricDimension>,
) -> HashMap<String, pb::MetricDimension> {
    metrics
        .iter()
        .map(|(name, metric)| {
            let dimension = pb::MetricDimension {
                comparison: metric.comparison.as_str().to_string(),
                value: metric.value,
                upper: metric.upper,
            };
            (name.clone(), dimension)
        })
        .collect()
}

fn dimensions_to_proto(dimensions: &SegmentDimensions) -> pb::SegmentDimensions {
    let demographic = &dimensions.demographic;
    let location = &dimensions.location;
    pb::SegmentDimensions {
        recency: dimensions.recency.map(|recency| pb::Recency {
            duration: recency.duration.as_str().to_string(),
            kind: recency.kind.as_str().to_string(),
        }),
        demographic: Some(pb::SegmentDemographics {
            app_version: set_to_proto(&demographic.app_version),
            channel: set_to_proto(&demographic.channel),
            device_type: set_to_proto(&demographic.device_type),
            make: set_to_proto(&demographic.make),
            model: set_to_proto(&demographic.model),
            platform: set_to_proto(&demographic.platform),
        }),
        location: Some(pb::SegmentLocation {
            country: set_to_proto(&location.country),
            gps_point: location.gps_point.map(|point| pb::GpsPoint {
                latitude: point.latitude,
                longitude: point.longitude,
                range_km: point.range_km,
            }),
        }),
        attributes: attributes_to_proto(&dimensions.attributes),
        metrics: metrics_to_proto(&dimensions.metrics),
        user_attributes: attributes_to_proto(&dimensions.user_attributes),
    }
}

fn groups_to_proto(list: &SegmentGroupList) -> pb::SegmentGroupList {
    pb::SegmentGroupList {
        include: list.include.as_str().to_string(),
        groups: list
            .groups
            .iter()
            .map(|group| pb::SegmentGroup {
                dimensions: group.dimensions.iter().map(dimensions_to_proto).collect(),
                dimension_type: group.dimension_type.as_str().to_string(),
                source_segments: group
                    .source_segments
                    .iter()
                    .map(|reference| pb::SegmentReference {
                        id: reference.id.clone(),
                        version: reference.version.unwrap_or(0),
                    })
                    .collect(),
                source_type: group.source_type.as_str().to_string(),
                segment_type: group.segment_type.as_str().to_string(),
            })
            .collect(),
    }
}

/// A definition as requests carry it.
pub fn definition_to_proto(definition: &SegmentDefinition) -> pb::SegmentDefinition {
    let rule = match &definition.rule {
        SegmentRule::Dimensions(dimensions) => {
            pb::segment_definition::Rule::Dimensions(dimensions_to_proto(dimensions))
        }
        SegmentRule::Groups(list) => {
            pb::segment_definition::Rule::SegmentGroups(groups_to_proto(list))
        }
        SegmentRule::Imported { import_job_id } => {
            pb::segment_definition::Rule::Imported(pb::ImportedRule {
                import_job_id: import_job_id.clone(),
            })
        }
    };
    pb::SegmentDefinition {
        name: definition.name.clone(),
        rule: Some(rule),
    }
}

/// A stored segment version as the API answers it.
pub fn record_to_proto(record: &SegmentRecord) -> pb::SegmentResponse {
    let rule = match &record.definition.rule {
        SegmentRule::Dimensions(dimensions) => {
            pb::segment_response::Rule::Dimensions(dimensions_to_proto(dimensions))
        }
        SegmentRule::Groups(list) => {
            pb::segment_response::Rule::SegmentGroups(groups_to_proto(list))
        }
        SegmentRule::Imported { import_job_id } => {
            pb::segment_response::Rule::Imported(pb::ImportedRule {
                import_job_id: import_job_id.clone(),
            })
        }
    };
    pb::SegmentResponse {
        project_id: record.project_id.clone(),
        segment_id: record.segment_id.clone(),
        version: record.version,
        name: record.definition.name.clone(),
        creation_date: record.creation_date.clone(),
        last_modified_date: record.last_modified_date.clone(),
        rule: Some(rule),
    }
}

/// Checks the ids and reads the segment of a write, reporting every problem at once.
fn write_input(
    ids: &[(&str, &str)],
    segment: Option<pb::SegmentDefinition>,
    limits: &Limits,
) -> Result<SegmentDefinition, Status> {
    let mut violations = Vec::new();
    for (field, id) in ids {
        validate_id(field, id, limits, &mut violations);
    }
    match definition_from_proto("segment", segment) {
        Ok(definition) if violations.is_empty() => Ok(definition),
        Ok(_) => Err(invalid_argument(&violations)),
        Err(more) => {
            violations.extend(more);
            Err(invalid_argument(&violations))
        }
    }
}

/// A version asked for: 0 is the latest.
fn requested_version(version: u32) -> Option<u32> {
    (version != 0).then_some(version)
}

#[tonic::async_trait]
impl Segments for SegmentsApi {
    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::SegmentResponse>, Status> {
        observed("CreateSegment", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            let definition = write_input(
                &[("project_id", &request.project_id)],
                request.segment,
                cluster.limits(),
            )?;
            let record = cluster
                .create_segment(&request.project_id, definition)
                .await
                .map_err(|error| to_status(under("segment", error)))?;
            Ok(record_to_proto(&record))
        })
        .await
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::SegmentResponse>, Status> {
        observed("UpdateSegment", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            let definition = write_input(
                &[
                    ("project_id", &request.project_id),
                    ("segment_id", &request.segment_id),
                ],
                request.segment,
                cluster.limits(),
            )?;
            let record = cluster
                .update_segment(&request.project_id, &request.segment_id, definition)
                .await
                .map_err(|error| to_status(under("segment", error)))?;
            Ok(record_to_proto(&record))
        })
        .await
    }

    async fn get_segment(
        &self,
        request: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::SegmentResponse>, Status> {
        observed("GetSegment", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("segment_id", &request.segment_id),
                ],
                cluster.limits(),
            )?;
            let record = cluster
                .get_segment(
                    &request.project_id,
                    &request.segment_id,
                    requested_version(request.version),
                )
                .await
                .map_err(to_status)?;
            Ok(record_to_proto(&record))
        })
        .await
    }

    async fn get_segments(
        &self,
        request: Request<pb::GetSegmentsRequest>,
    ) -> Result<Response<pb::SegmentsResponse>, Status> {
        observed("GetSegments", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let records = cluster
                .list_segments(&request.project_id)
                .await
                .map_err(to_status)?;
            Ok(pb::SegmentsResponse {
                segments: records.iter().map(record_to_proto).collect(),
            })
        })
        .await
    }

    async fn get_segment_versions(
        &self,
        request: Request<pb::GetSegmentVersionsRequest>,
    ) -> Result<Response<pb::SegmentsResponse>, Status> {
        observed("GetSegmentVersions", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("segment_id", &request.segment_id),
                ],
                cluster.limits(),
            )?;
            let records = cluster
                .segment_versions(&request.project_id, &request.segment_id)
                .await
                .map_err(to_status)?;
            Ok(pb::SegmentsResponse {
                segments: records.iter().map(record_to_proto).collect(),
            })
        })
        .await
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::SegmentResponse>, Status> {
        observed("DeleteSegment", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("segment_id", &request.segment_id),
                ],
                cluster.limits(),
            )?;
            let record = cluster
                .delete_segment(&request.project_id, &request.segment_id)
                .await
                .map_err(to_status)?;
            Ok(record_to_proto(&record))
        })
        .await
    }

    async fn estimate_segment_size(
        &self,
        request: Request<pb::EstimateSegmentSizeRequest>,
    ) -> Result<Response<pb::EstimateSegmentSizeResponse>, Status> {
        observed("EstimateSegmentSize", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(
                &[
                    ("project_id", &request.project_id),
                    ("segment_id", &request.segment_id),
                ],
                cluster.limits(),
            )?;
            // The answer names the version counted, so "latest" is pinned first.
            let version = match requested_version(request.version) {
                Some(version) => version,
                None => {
                    cluster
                        .get_segment(&request.project_id, &request.segment_id, None)
                        .await
                        .map_err(to_status)?
                        .version
                }
            };
            let endpoints = cluster
                .estimate_segment(&request.project_id, &request.segment_id, Some(version))
                .await
                .map_err(to_status)?;
            Ok(pb::EstimateSegmentSizeResponse {
                segment_id: request.segment_id,
                version,
                endpoints,
            })
        })
        .await
    }
}
