//! Segments (SPEC SEG-1, SEG-2, SEG-4): which endpoints a segment selects.
//!
//! A [`SegmentDefinition`] is what is stored: a name and a [`SegmentRule`]: one set of
//! [`SegmentDimensions`], a [`SegmentGroupList`] that combines dimension sets and other
//! segments, or the endpoints an import job wrote (an imported, static segment; SEG-3). [`matches`] decides for one endpoint, described by its [`EndpointFacts`]; it is
//! the plain evaluator that the shard index ([`super::segment_index`]) is tested against.
//!
//! Where Pinpoint's documentation is silent, Herald decides as follows:
//! - Text comparisons (set dimensions; attribute INCLUSIVE, EXCLUSIVE and CONTAINS) ignore
//!   case (Unicode lower case); attribute and metric *names* are exact.
//! - EXCLUSIVE selects every endpoint the INCLUSIVE form would not, including endpoints
//!   without the field or the attribute.
//! - A multi-valued attribute meets INCLUSIVE, CONTAINS and the date operators when any of
//!   its values does, and EXCLUSIVE when none of its values is listed.
//! - Dates are RFC 3339 timestamps or plain `YYYY-MM-DD` dates (midnight UTC). ON compares
//!   UTC calendar days; BETWEEN includes both ends. Values that are not dates never match a
//!   date operator.
//! - Recency is judged to the second: "active in the last 24 h" means last seen at or after
//!   `now - 24 h` (a last-seen time in the future counts as active); an endpoint never seen
//!   is inactive in every window.
//! - A metric the endpoint lacks meets no comparison; BETWEEN includes both bounds.
//! - GPS: haversine distance on a sphere of the mean Earth radius, range inclusive; an
//!   endpoint without both coordinates is outside every range.
//! - Device type is the endpoint's model: endpoints have no separate device type field.
//! - An empty list of dimension sets, groups or source segments sets no condition.
//! - INACTIVE and opted-out endpoints are members; sending leaves them out later (CHN-3).
//! - An imported segment's members are the endpoints its job imported that still exist:
//!   a deleted endpoint leaves it, and importing the endpoint again elsewhere keeps it in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::endpoint::{ChannelType, Endpoint};
use super::violation::{FieldViolation, join};

/// How deep segment references may nest: a segment referring to one referring to another …
pub const MAX_REFERENCE_DEPTH: usize = 8;

/// Mean Earth radius (IUGG), used for every GPS distance.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Why a segment could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// A source segment does not exist (or not in that version).
    #[error("segment {id:?} ({}) does not exist", version_text(*.version))]
    UnknownSegment {
        /// Id of the missing segment.
        id: String,
        /// Version asked for; `None` is the latest.
        version: Option<u32>,
    },
    /// Segments refer to each other in a loop, so membership is undefined.
    #[error("segments refer to each other in a cycle: {}", .path.join(" -> "))]
    ReferenceCycle {
        /// Ids along the loop, the first repeated at the end.
        path: Vec<String>,
    },
    /// References nest deeper than [`MAX_REFERENCE_DEPTH`].
    #[error("segment references nest deeper than {MAX_REFERENCE_DEPTH} levels (through {id:?})")]
    TooDeep {
        /// The reference found beyond the limit.
        id: String,
    },
}

/// Result of segment evaluation.
pub type Result<T, E = SegmentError> = std::result::Result<T, E>;

fn version_text(version: Option<u32>) -> String {
    version.map_or_else(|| "latest version".to_string(), |v| format!("version {v}"))
}

/// A closed set of names clients send as text, e.g. `INCLUSIVE`.
pub trait WireName: Sized + Copy + 'static {
    /// Every variant, in declaration order.
    const ALL: &'static [Self];

    /// The name clients send.
    fn as_str(self) -> &'static str;

    /// The variant called `text`, ignoring ASCII case.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|variant| variant.as_str().eq_ignore_ascii_case(text))
    }
}

/// Parses `text` as an `E`, or records at `field` that it is none of `E`'s names.
pub fn parse_wire<E: WireName>(
    field: &str,
    text: &str,
    violations: &mut Vec<FieldViolation>,
) -> Option<E> {
    let parsed = E::parse(text);
    if parsed.is_none() {
        let names: Vec<&str> = E::ALL.iter().map(|variant| variant.as_str()).collect();
        violations.push(FieldViolation::new(
            field,
            format!("{text:?} is not one of {}", names.join(", ")),
        ));
    }
    parsed
}

/// Declares a [`WireName`] enum: each variant with the name clients send.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $wire:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl WireName for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }
    };
}

wire_enum! {
    /// Length of the recency window.
    RecencyDuration {
        /// The last 24 hours.
        Hr24 => "HR_24",
        /// The last 7 days.
        Day7 => "DAY_7",
        /// The last 14 days.
        Day14 => "DAY_14",
        /// The last 30 days.
        Day30 => "DAY_30",
    }
}

impl RecencyDuration {
    /// Length of the window in seconds.
    pub fn seconds(self) -> i64 {
        const DAY: i64 = 24 * 60 * 60;
        match self {
            Self::Hr24 => DAY,
            Self::Day7 => 7 * DAY,
            Self::Day14 => 14 * DAY,
            Self::Day30 => 30 * DAY,
        }
    }
}

wire_enum! {
    /// Whether the segment wants endpoints seen in the window or not seen in it.
    RecencyKind {
        /// Seen in the window.
        Active => "ACTIVE",
        /// Not seen in the window (or never seen).
        Inactive => "INACTIVE",
    }
}

wire_enum! {
    /// Whether a list of values selects endpoints or leaves them out.
    SetKind {
        /// Endpoints whose value is listed.
        Inclusive => "INCLUSIVE",
        /// Endpoints whose value is not listed.
        Exclusive => "EXCLUSIVE",
    }
}

wire_enum! {
    /// Operator of an attribute dimension.
    AttributeKind {
        /// A value equals one of the listed values (ignoring case).
        Inclusive => "INCLUSIVE",
        /// No value equals a listed value (ignoring case).
        Exclusive => "EXCLUSIVE",
        /// A value contains one of the listed values (ignoring case).
        Contains => "CONTAINS",
        /// A date value is earlier than the listed date.
        Before => "BEFORE",
        /// A date value is later than the listed date.
        After => "AFTER",
        /// A date value falls on a listed day (UTC).
        On => "ON",
        /// A date value is within the two listed dates, both included.
        Between => "BETWEEN",
    }
}

wire_enum! {
    /// Operator of a metric dimension.
    MetricComparison {
        /// metric > value.
        GreaterThan => "GREATER_THAN",
        /// metric ≥ value.
        GreaterThanOrEqual => "GREATER_THAN_OR_EQUAL",
        /// metric < value.
        LessThan => "LESS_THAN",
        /// metric ≤ value.
        LessThanOrEqual => "LESS_THAN_OR_EQUAL",
        /// metric = value.
        Equal => "EQUAL",
        /// value ≤ metric ≤ upper.
        Between => "BETWEEN",
    }
}

wire_enum! {
    /// How several conditions combine: all of them hold, any holds, or none holds.
    Combination {
        /// Every condition holds.
        All => "ALL",
        /// At least one condition holds.
        Any => "ANY",
        /// No condition holds.
        None => "NONE",
    }
}

impl Combination {
    /// Combines `outcomes`; an empty list is no condition, so it holds.
    pub fn combine(self, outcomes: impl IntoIterator<Item = bool>) -> bool {
        let mut outcomes = outcomes.into_iter().peekable();
        if outcomes.peek().is_none() {
            return true;
        }
        match self {
            Self::All => outcomes.all(|outcome| outcome),
            Self::Any => outcomes.any(|outcome| outcome),
            Self::None => !outcomes.any(|outcome| outcome),
        }
    }
}

wire_enum! {
    /// How a group's source segments combine.
    SourceCombination {
        /// Members of every source segment.
        All => "ALL",
        /// Members of at least one source segment.
        Any => "ANY",
    }
}

/// Behaviour: whether the endpoint was seen in a recent window (SEG-1 usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recency {
    /// Length of the window ending now.
    pub duration: RecencyDuration,
    /// Seen in the window, or not.
    pub kind: RecencyKind,
}

impl Recency {
    /// Whether an endpoint last seen at `last_seen` (`None`: never) matches at `now`.
    pub fn matches(&self, last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        self.matches_second(last_seen.map(|seen| seen.timestamp()), now.timestamp())
    }

    /// [`Recency::matches`] on Unix seconds, the resolution recency is judged at.
    pub fn matches_second(&self, last_seen_second: Option<i64>, now_second: i64) -> bool {
        let cutoff = now_second.saturating_sub(self.duration.seconds());
        let seen_within = last_seen_second.is_some_and(|seen| seen >= cutoff);
        match self.kind {
            RecencyKind::Active => seen_within,
            RecencyKind::Inactive => !seen_within,
        }
    }
}

/// A list of values a text field must (INCLUSIVE) or must not (EXCLUSIVE) take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDimension {
    /// Select listed values, or everything else.
    pub kind: SetKind,
    /// Values compared ignoring case.
    pub values: Vec<String>,
}

impl SetDimension {
    /// Whether an endpoint whose field holds `value` (empty when unknown) matches.
    pub fn matches(&self, value: &str) -> bool {
        PreparedSet::new(self).matches(value)
    }

    /// Whether an endpoint on `channel` matches; values are channel names (`FCM` = `GCM`).
    pub fn matches_channel(&self, channel: ChannelType) -> bool {
        let listed = self
            .values
            .iter()
            .any(|value| ChannelType::parse(value) == Some(channel));
        listed != (self.kind == SetKind::Exclusive)
    }
}

/// Demographic dimensions (SEG-1): each set one must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDemographics {
    /// The app version.
    pub app_version: Option<SetDimension>,
    /// The channel type (`EMAIL`, `SMS`, `GCM`, …).
    pub channel: Option<SetDimension>,
    /// The device type; endpoints carry none, so this is their model.
    pub device_type: Option<SetDimension>,
    /// The device make.
    pub make: Option<SetDimension>,
    /// The device model.
    pub model: Option<SetDimension>,
    /// The platform.
    pub platform: Option<SetDimension>,
}

/// Within `range_km` of a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpsPoint {
    /// Degrees, −90..=90.
    pub latitude: f64,
    /// Degrees, −180..=180.
    pub longitude: f64,
    /// Radius in kilometres, more than 0.
    pub range_km: f64,
}

impl GpsPoint {
    /// Whether the point at `latitude`, `longitude` is within range (inclusive).
    pub fn contains(&self, latitude: f64, longitude: f64) -> bool {
        haversine_km(self.latitude, self.longitude, latitude, longitude) <= self.range_km
    }

    /// Whether a point at `latitude` is out of range whatever its longitude.
    ///
    /// Much cheaper than [`GpsPoint::contains`] and never true for a point it accepts: the
    /// distance is at least the latitude arc, and the margin covers rounding of both.
    pub(crate) fn surely_outside(&self, latitude: f64) -> bool {
        let valid = -90.0..=90.0;
        if !valid.contains(&latitude) || !valid.contains(&self.latitude) {
            return false;
        }
        let arc_km = (latitude - self.latitude).abs().to_radians() * EARTH_RADIUS_KM;
        arc_km > self.range_km * (1.0 + 1e-6) + 1e-3
    }
}

/// Great-circle distance in kilometres between two points given in degrees.
pub fn haversine_km(latitude1: f64, longitude1: f64, latitude2: f64, longitude2: f64) -> f64 {
    let half_lat = (latitude2 - latitude1).to_radians() / 2.0;
    let half_lon = (longitude2 - longitude1).to_radians() / 2.0;
    let a = half_lat.sin().powi(2)
        + latitude1.to_radians().cos() * latitude2.to_radians().cos() * half_lon.sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Location dimensions (SEG-1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentLocation {
    /// ISO 3166-1 alpha-2 country codes.
    pub country: Option<SetDimension>,
    /// Within a distance of a point.
    pub gps_point: Option<GpsPoint>,
}

/// A condition on the values of one endpoint or user attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDimension {
    /// The operator.
    pub kind: AttributeKind,
    /// Texts for INCLUSIVE/EXCLUSIVE/CONTAINS; dates for BEFORE/AFTER/ON (one each, or
    /// several days for ON) and BETWEEN (earlier, later).
    pub values: Vec<String>,
}

impl AttributeDimension {
    /// Whether an endpoint whose attribute holds `values` (empty when it has none) matches.
    pub fn matches(&self, values: &[String]) -> bool {
        PreparedAttribute::new(self).matches(values)
    }
}

/// A comparison of one metric with a number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricDimension {
    /// The operator.
    pub comparison: MetricComparison,
    /// The number compared with (the lower bound of BETWEEN).
    pub value: f64,
    /// The upper bound of BETWEEN; unused by other comparisons.
    pub upper: Option<f64>,
}

impl MetricDimension {
    /// Whether an endpoint whose metric is `metric` (`None`: absent) matches.
    pub fn matches(&self, metric: Option<f64>) -> bool {
        let Some(metric) = metric else {
            return false;
        };
        match self.comparison {
            MetricComparison::GreaterThan => metric > self.value,
            MetricComparison::GreaterThanOrEqual => metric >= self.value,
            MetricComparison::LessThan => metric < self.value,
            MetricComparison::LessThanOrEqual => metric <= self.value,
            MetricComparison::Equal => metric == self.value,
            MetricComparison::Between => self
                .upper
                .is_some_and(|upper| self.value <= metric && metric <= upper),
        }
    }
}

/// One set of dimensions (SEG-1); an endpoint matches when it meets every one given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentDimensions {
    /// Behaviour: seen, or not, in a recent window.
    pub recency: Option<Recency>,
    /// Device and app.
    pub demographic: SegmentDemographics,
    /// Country and distance.
    pub location: SegmentLocation,
    /// Endpoint attributes by exact name.
    pub attributes: BTreeMap<String, AttributeDimension>,
    /// Endpoint metrics by exact name.
    pub metrics: BTreeMap<String, MetricDimension>,
    /// User attributes by exact name.
    pub user_attributes: BTreeMap<String, AttributeDimension>,
}

/// A segment named by id, in one version or the latest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentReference {
    /// Id of the segment.
    pub id: String,
    /// Its version; `None` follows the latest.
    pub version: Option<u32>,
}

/// One group of SEG-2: dimension sets, and other segments to start from or leave out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentGroup {
    /// Dimension sets, combined by `dimension_type`.
    pub dimensions: Vec<SegmentDimensions>,
    /// How the dimension sets combine.
    pub dimension_type: Combination,
    /// Other segments, combined by `source_type`.
    pub source_segments: Vec<SegmentReference>,
    /// How the source segments combine.
    pub source_type: SourceCombination,
    /// Keep the members of the combined source segments, or everyone else.
    pub segment_type: SetKind,
}

/// Groups of SEG-2 and how they combine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentGroupList {
    /// How the groups combine.
    pub include: Combination,
    /// The groups.
    pub groups: Vec<SegmentGroup>,
}

/// What selects a segment's members.
// One rule per stored segment version: the size of the small variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SegmentRule {
    /// One set of dimensions; an empty set selects every endpoint.
    Dimensions(SegmentDimensions),
    /// Groups combining dimension sets and other segments.
    Groups(SegmentGroupList),
    /// The endpoints import job `import_job_id` imported (SEG-3): a static list, recorded in
    /// each endpoint's shard as the job writes it.
    Imported {
        /// The job whose rows are the members.
        import_job_id: String,
    },
}

impl SegmentRule {
    /// The segments this rule refers to directly, in order, repeats included.
    pub fn references(&self) -> impl Iterator<Item = &SegmentReference> {
        let groups = match self {
            Self::Dimensions(_) | Self::Imported { .. } => &[][..],
            Self::Groups(list) => &list.groups[..],
        };
        groups.iter().flat_map(|group| &group.source_segments)
    }
}

/// A dynamic segment as stored: its name and its rule (one version of it; SEG-4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDefinition {
    /// Name shown to users.
    pub name: String,
    /// Who is a member.
    pub rule: SegmentRule,
}

impl SegmentDefinition {
    /// Every problem with the definition, each naming its field under `field`, e.g.
    /// `segment.dimensions.attributes["signup"].values[0]`.
    ///
    /// References are not checked here: whether they exist, loop or nest too deep depends
    /// on the stored segments (see [`resolve_references`]).
    pub fn validate(&self, field: &str) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        if self.name.trim().is_empty() {
            violations.push(FieldViolation::new(
                join(field, "name"),
                "must not be empty",
            ));
        } else if self.name.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                join(field, "name"),
                "must not contain control characters",
            ));
        }
        match &self.rule {
            SegmentRule::Dimensions(dimensions) => {
                validate_dimensions(&join(field, "dimensions"), dimensions, &mut violations);
            }
            SegmentRule::Groups(list) => {
                validate_groups(&join(field, "segment_groups"), list, &mut violations);
            }
            SegmentRule::Imported { import_job_id } => {
                let id_field = join(&join(field, "imported"), "import_job_id");
                if import_job_id.trim().is_empty() {
                    violations.push(FieldViolation::new(id_field, "must not be empty"));
                } else if import_job_id.chars().any(char::is_control) {
                    violations.push(FieldViolation::new(
                        id_field,
                        "must not contain control characters",
                    ));
                }
            }
        }
        violations
    }
}

fn validate_groups(field: &str, list: &SegmentGroupList, violations: &mut Vec<FieldViolation>) {
    let groups_field = join(field, "groups");
    if list.groups.is_empty() {
        violations.push(FieldViolation::new(
            &groups_field,
            "must have at least one group",
        ));
    }
    for (i, group) in list.groups.iter().enumerate() {
        let group_field = format!("{groups_field}[{i}]");
        if group.dimensions.is_empty() && group.source_segments.is_empty() {
            violations.push(FieldViolation::new(
                &group_field,
                "must have dimensions or source segments",
            ));
        }
        for (j, dimensions) in group.dimensions.iter().enumerate() {
            validate_dimensions(
                &format!("{group_field}.dimensions[{j}]"),
                dimensions,
                violations,
            );
        }
        for (j, reference) in group.source_segments.iter().enumerate() {
            if reference.id.trim().is_empty() {
                violations.push(FieldViolation::new(
                    format!("{group_field}.source_segments[{j}].id"),
                    "must not be empty",
                ));
            }
        }
    }
}

fn validate_dimensions(
    field: &str,
    dimensions: &SegmentDimensions,
    violations: &mut Vec<FieldViolation>,
) {
    let demographic = &dimensions.demographic;
    let demographic_field = join(field, "demographic");
    let text_sets = [
        ("app_version", &demographic.app_version),
        ("device_type", &demographic.device_type),
        ("make", &demographic.make),
        ("model", &demographic.model),
        ("platform", &demographic.platform),
    ];
    for (name, set) in text_sets {
        if let Some(set) = set {
            validate_set(&join(&demographic_field, name), set, violations, |_| None);
        }
    }
    if let Some(set) = &demographic.channel {
        validate_set(
            &join(&demographic_field, "channel"),
            set,
            violations,
            |value| {
                ChannelType::parse(value).is_none().then(|| {
                    format!(
                        "{value:?} is not a channel type (EMAIL, SMS, VOICE, APNS, APNS_SANDBOX, GCM, IN_APP, CUSTOM)"
                    )
                })
            },
        );
    }
    let location_field = join(field, "location");
    if let Some(set) = &dimensions.location.country {
        validate_set(
            &join(&location_field, "country"),
            set,
            violations,
            |value| {
                let is_code = value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic());
                (!is_code).then(|| format!("{value:?} is not an ISO 3166-1 alpha-2 country code"))
            },
        );
    }
    if let Some(point) = &dimensions.location.gps_point {
        validate_gps(&join(&location_field, "gps_point"), point, violations);
    }
    for (name, attribute) in &dimensions.attributes {
        validate_attribute(&format!("{field}.attributes"), name, attribute, violations);
    }
    for (name, attribute) in &dimensions.user_attributes {
        validate_attribute(
            &format!("{field}.user_attributes"),
            name,
            attribute,
            violations,
        );
    }
    for (name, metric) in &dimensions.metrics {
        validate_metric(
            &format!("{field}.metrics[{name:?}]"),
            name,
            metric,
            violations,
        );
    }
}

/// Checks a set dimension; `problem` names what is wrong with one value, if anything.
fn validate_set(
    field: &str,
    set: &SetDimension,
    violations: &mut Vec<FieldViolation>,
    problem: impl Fn(&str) -> Option<String>,
) {
    if set.values.is_empty() {
        violations.push(FieldViolation::new(
            join(field, "values"),
            "must list at least one value",
        ));
    }
    for (i, value) in set.values.iter().enumerate() {
        let reason = if value.trim().is_empty() {
            Some("must not be empty".to_string())
        } else {
            problem(value)
        };
        if let Some(reason) = reason {
            violations.push(FieldViolation::new(format!("{field}.values[{i}]"), reason));
        }
    }
}

fn validate_gps(field: &str, point: &GpsPoint, violations: &mut Vec<FieldViolation>) {
    if !(-90.0..=90.0).contains(&point.latitude) {
        violations.push(FieldViolation::new(
            join(field, "latitude"),
            format!("{} is not a latitude (-90 to 90)", point.latitude),
        ));
    }
    if !(-180.0..=180.0).contains(&point.longitude) {
        violations.push(FieldViolation::new(
            join(field, "longitude"),
            format!("{} is not a longitude (-180 to 180)", point.longitude),
        ));
    }
    if !(point.range_km.is_finite() && point.range_km > 0.0) {
        violations.push(FieldViolation::new(
            join(field, "range_km"),
            format!("{} is not a positive number of kilometres", point.range_km),
        ));
    }
}

fn validate_attribute(
    map_field: &str,
    name: &str,
    attribute: &AttributeDimension,
    violations: &mut Vec<FieldViolation>,
) {
    let field = format!("{map_field}[{name:?}]");
    if name.trim().is_empty() {
        violations.push(FieldViolation::new(&field, "name must not be empty"));
    }
    let values_field = join(&field, "values");
    let values = &attribute.values;
    if values.is_empty() {
        violations.push(FieldViolation::new(
            &values_field,
            "must list at least one value",
        ));
        return;
    }
    let kind = attribute.kind;
    let wanted = match kind {
        AttributeKind::Before | AttributeKind::After => Some(1),
        AttributeKind::Between => Some(2),
        _ => None,
    };
    if let Some(wanted) = wanted
        && values.len() != wanted
    {
        let noun = if wanted == 1 { "date" } else { "dates" };
        violations.push(FieldViolation::new(
            &values_field,
            format!(
                "{} takes exactly {wanted} {noun}, got {}",
                kind.as_str(),
                values.len()
            ),
        ));
    }
    let is_date = !matches!(
        kind,
        AttributeKind::Inclusive | AttributeKind::Exclusive | AttributeKind::Contains
    );
    let mut dates = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let value_field = format!("{values_field}[{i}]");
        if value.trim().is_empty() {
            violations.push(FieldViolation::new(value_field, "must not be empty"));
        } else if is_date {
            match parse_instant(value) {
                Some(instant) => dates.push(instant),
                None => violations.push(FieldViolation::new(
                    value_field,
                    format!(
                        "{value:?} is not a date (e.g. 2026-11-25) or an RFC 3339 timestamp (e.g. 2026-11-25T12:00:00Z)"
                    ),
                )),
            }
        }
    }
    if kind == AttributeKind::Between
        && let [earlier, later] = dates[..]
        && earlier > later
    {
        violations.push(FieldViolation::new(
            values_field,
            format!(
                "BETWEEN takes the earlier date first, got {:?} after {:?}",
                values[0], values[1]
            ),
        ));
    }
}

fn validate_metric(
    field: &str,
    name: &str,
    metric: &MetricDimension,
    violations: &mut Vec<FieldViolation>,
) {
    if name.trim().is_empty() {
        violations.push(FieldViolation::new(field, "name must not be empty"));
    }
    if !metric.value.is_finite() {
        violations.push(FieldViolation::new(
            join(field, "value"),
            format!("{} is not a finite number", metric.value),
        ));
    }
    if metric.comparison != MetricComparison::Between {
        return;
    }
    let upper_field = join(field, "upper");
    match metric.upper {
        None => violations.push(FieldViolation::new(
            upper_field,
            "BETWEEN needs an upper bound",
        )),
        Some(upper) if !upper.is_finite() => violations.push(FieldViolation::new(
            upper_field,
            format!("{upper} is not a finite number"),
        )),
        Some(upper) if upper < metric.value => violations.push(FieldViolation::new(
            upper_field,
            format!("{upper} is less than the lower bound {}", metric.value),
        )),
        Some(_) => {}
    }
}

/// A date as segments read it: an RFC 3339 timestamp, or a `YYYY-MM-DD` day at midnight UTC.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc())
}

/// What segment evaluation needs to know of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointFacts {
    /// Channel type.
    pub channel: ChannelType,
    /// App version; empty when unknown.
    pub app_version: String,
    /// Device type; empty when unknown.
    pub device_type: String,
    /// Device make; empty when unknown.
    pub make: String,
    /// Device model; empty when unknown.
    pub model: String,
    /// Platform; empty when unknown.
    pub platform: String,
    /// ISO country code; empty when unknown.
    pub country: String,
    /// Degrees.
    pub latitude: Option<f64>,
    /// Degrees.
    pub longitude: Option<f64>,
    /// Endpoint attributes.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Endpoint metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Attributes of the endpoint's user.
    pub user_attributes: BTreeMap<String, Vec<String>>,
    /// When the endpoint was last seen (its latest event); `None` if never.
    pub last_seen: Option<DateTime<Utc>>,
    /// Ids of the import jobs whose imported segments hold the endpoint (SEG-3).
    pub imported_by: BTreeSet<String>,
}

impl EndpointFacts {
    /// The facts of a stored endpoint last seen at `last_seen`, in no imported segment (the
    /// memberships are separate records; set [`EndpointFacts::imported_by`] from them).
    ///
    /// Device type is the model: endpoints carry no separate device type.
    pub fn from_endpoint(endpoint: &Endpoint, last_seen: Option<DateTime<Utc>>) -> Self {
        let demographic = &endpoint.demographic;
        Self {
            channel: endpoint.channel_type,
            app_version: demographic.app_version.clone(),
            device_type: demographic.model.clone(),
            make: demographic.make.clone(),
            model: demographic.model.clone(),
            platform: demographic.platform.clone(),
            country: endpoint.location.country.clone(),
            latitude: endpoint.location.latitude,
            longitude: endpoint.location.longitude,
            attributes: endpoint.attributes.clone(),
            metrics: endpoint.metrics.clone(),
            user_attributes: endpoint.user.user_attributes.clone(),
            last_seen,
            imported_by: BTreeSet::new(),
        }
    }

    /// Latitude and longitude, when both are known.
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        self.latitude.zip(self.longitude)
    }
}

/// Finds stored segments by reference, for groups that include or exclude other segments.
pub trait SegmentResolver<'a> {
    /// The definition of segment `id` in `version` (`None`: the latest), if it exists.
    fn resolve(&self, id: &str, version: Option<u32>) -> Option<&'a SegmentDefinition>;
}

impl<'a, F> SegmentResolver<'a> for F
where
    F: Fn(&str, Option<u32>) -> Option<&'a SegmentDefinition>,
{
    fn resolve(&self, id: &str, version: Option<u32>) -> Option<&'a SegmentDefinition> {
        self(id, version)
    }
}

/// A resolver that knows no segment: for rules without references.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSegments;

impl<'a> SegmentResolver<'a> for NoSegments {
    fn resolve(&self, _id: &str, _version: Option<u32>) -> Option<&'a SegmentDefinition> {
        None
    }
}

/// Every segment `rule` refers to, directly or through others, resolved.
///
/// Fails when one does not exist, when references loop, or when they nest deeper than
/// [`MAX_REFERENCE_DEPTH`]; the answer never depends on any endpoint, so a segment either
/// evaluates for all endpoints or for none.
pub fn resolve_references<'a, R>(
    rule: &SegmentRule,
    resolver: &R,
) -> Result<BTreeMap<SegmentReference, &'a SegmentDefinition>>
where
    R: SegmentResolver<'a> + ?Sized,
{
    let mut walk = ReferenceWalk {
        resolver,
        resolved: BTreeMap::new(),
        heights: BTreeMap::new(),
        stack: Vec::new(),
    };
    walk.height_of_rule(rule)?;
    Ok(walk.resolved)
}

/// Depth-first walk of references with memoised heights, so shared references cost once.
struct ReferenceWalk<'a, 'r, R: ?Sized> {
    resolver: &'r R,
    resolved: BTreeMap<SegmentReference, &'a SegmentDefinition>,
    /// Longest chain of references below each finished reference.
    heights: BTreeMap<SegmentReference, usize>,
    /// References being walked, outermost first: a repeat is a cycle.
    stack: Vec<SegmentReference>,
}

impl<'a, R: SegmentResolver<'a> + ?Sized> ReferenceWalk<'a, '_, R> {
    fn height_of_rule(&mut self, rule: &SegmentRule) -> Result<usize> {
        let mut height = 0;
        for reference in rule.references() {
            let below = self.height_of(reference)?;
            if self.stack.len() + 1 + below > MAX_REFERENCE_DEPTH {
                return Err(SegmentError::TooDeep {
                    id: reference.id.clone(),
                });
            }
            height = height.max(1 + below);
        }
        Ok(height)
    }

    fn height_of(&mut self, reference: &SegmentReference) -> Result<usize> {
        if let Some(&height) = self.heights.get(reference) {
            return Ok(height);
        }
        if let Some(start) = self.stack.iter().position(|r| r == reference) {
            let mut path: Vec<String> = self.stack[start..].iter().map(|r| r.id.clone()).collect();
            path.push(reference.id.clone());
            return Err(SegmentError::ReferenceCycle { path });
        }
        if self.stack.len() >= MAX_REFERENCE_DEPTH {
            return Err(SegmentError::TooDeep {
                id: reference.id.clone(),
            });
        }
        let definition = self
            .resolver
            .resolve(&reference.id, reference.version)
            .ok_or_else(|| SegmentError::UnknownSegment {
                id: reference.id.clone(),
                version: reference.version,
            })?;
        self.resolved.insert(reference.clone(), definition);
        self.stack.push(reference.clone());
        let height = self.height_of_rule(&definition.rule)?;
        self.stack.pop();
        self.heights.insert(reference.clone(), height);
        Ok(height)
    }
}

/// Whether the endpoint described by `facts` is a member of `definition` at `now`.
///
/// The plain evaluator: one endpoint at a time, every condition checked as written. Shards
/// use [`super::segment_index::SegmentIndex`], which must agree with it.
pub fn matches<'a, R>(
    definition: &SegmentDefinition,
    facts: &EndpointFacts,
    now: DateTime<Utc>,
    resolver: &R,
) -> Result<bool>
where
    R: SegmentResolver<'a> + ?Sized,
{
    let references = resolve_references(&definition.rule, resolver)?;
    Ok(rule_matches(&definition.rule, facts, now, &references))
}

fn rule_matches(
    rule: &SegmentRule,
    facts: &EndpointFacts,
    now: DateTime<Utc>,
    references: &BTreeMap<SegmentReference, &SegmentDefinition>,
) -> bool {
    match rule {
        SegmentRule::Dimensions(dimensions) => dimensions_match(dimensions, facts, now),
        SegmentRule::Groups(list) => list.include.combine(
            list.groups
                .iter()
                .map(|group| group_matches(group, facts, now, references)),
        ),
        SegmentRule::Imported { import_job_id } => facts.imported_by.contains(import_job_id),
    }
}

fn group_matches(
    group: &SegmentGroup,
    facts: &EndpointFacts,
    now: DateTime<Utc>,
    references: &BTreeMap<SegmentReference, &SegmentDefinition>,
) -> bool {
    let in_sources = group.source_segments.is_empty() || {
        let mut memberships = group.source_segments.iter().map(|reference| {
            references
                .get(reference)
                .is_some_and(|source| rule_matches(&source.rule, facts, now, references))
        });
        let member = match group.source_type {
            SourceCombination::All => memberships.all(|member| member),
            SourceCombination::Any => memberships.any(|member| member),
        };
        member != (group.segment_type == SetKind::Exclusive)
    };
    in_sources
        && group.dimension_type.combine(
            group
                .dimensions
                .iter()
                .map(|dimensions| dimensions_match(dimensions, facts, now)),
        )
}

fn dimensions_match(
    dimensions: &SegmentDimensions,
    facts: &EndpointFacts,
    now: DateTime<Utc>,
) -> bool {
    let demographic = &dimensions.demographic;
    let location = &dimensions.location;
    let text =
        |set: &Option<SetDimension>, value: &str| set.as_ref().is_none_or(|set| set.matches(value));
    let no_values: &[String] = &[];
    dimensions
        .recency
        .is_none_or(|recency| recency.matches(facts.last_seen, now))
        && demographic
            .channel
            .as_ref()
            .is_none_or(|set| set.matches_channel(facts.channel))
        && text(&demographic.app_version, &facts.app_version)
        && text(&demographic.device_type, &facts.device_type)
        && text(&demographic.make, &facts.make)
        && text(&demographic.model, &facts.model)
        && text(&demographic.platform, &facts.platform)
        && text(&location.country, &facts.country)
        && location.gps_point.is_none_or(|point| {
            facts
                .coordinates()
                .is_some_and(|(latitude, longitude)| point.contains(latitude, longitude))
        })
        && dimensions.attributes.iter().all(|(name, attribute)| {
            attribute.matches(facts.attributes.get(name).map_or(no_values, Vec::as_slice))
        })
        && dimensions
            .metrics
            .iter()
            .all(|(name, metric)| metric.matches(facts.metrics.get(name).copied()))
        && dimensions.user_attributes.iter().all(|(name, attribute)| {
            attribute.matches(
                facts
                    .user_attributes
                    .get(name)
                    .map_or(no_values, Vec::as_slice),
            )
        })
}

/// A set dimension ready to test many values: its values lower-cased once.
pub(crate) struct PreparedSet {
    exclusive: bool,
    folded: Vec<String>,
}

impl PreparedSet {
    pub(crate) fn new(set: &SetDimension) -> Self {
        Self {
            exclusive: set.kind == SetKind::Exclusive,
            folded: set
                .values
                .iter()
                .map(|value| value.to_lowercase())
                .collect(),
        }
    }

    /// Whether a field holding `value` matches.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let listed = self
            .folded
            .iter()
            .any(|folded| equals_folded(value, folded));
        listed != self.exclusive
    }
}

/// Whether `value` equals an already lower-cased text, ignoring case.
fn equals_folded(value: &str, folded: &str) -> bool {
    if value.is_ascii() {
        // Lower-casing ASCII gives ASCII, so a non-ASCII `folded` never equals it.
        value.eq_ignore_ascii_case(folded)
    } else {
        value.to_lowercase() == folded
    }
}

/// An attribute dimension ready to test many values: texts lower-cased, dates parsed once.
pub(crate) struct PreparedAttribute {
    exclusive: bool,
    test: ValueTest,
}

/// What one attribute value must satisfy, before EXCLUSIVE negates the outcome.
enum ValueTest {
    Equals(Vec<String>),
    Contains(Vec<String>),
    Before(Vec<DateTime<Utc>>),
    After(Vec<DateTime<Utc>>),
    On(Vec<NaiveDate>),
    /// `None` when the dimension does not hold two dates: nothing is between.
    Between(Option<(DateTime<Utc>, DateTime<Utc>)>),
}

impl PreparedAttribute {
    pub(crate) fn new(attribute: &AttributeDimension) -> Self {
        let folded = || attribute.values.iter().map(|v| v.to_lowercase()).collect();
        let dates = || -> Vec<DateTime<Utc>> {
            attribute
                .values
                .iter()
                .filter_map(|v| parse_instant(v))
                .collect()
        };
        let test = match attribute.kind {
            AttributeKind::Inclusive | AttributeKind::Exclusive => ValueTest::Equals(folded()),
            AttributeKind::Contains => ValueTest::Contains(folded()),
            AttributeKind::Before => ValueTest::Before(dates()),
            AttributeKind::After => ValueTest::After(dates()),
            AttributeKind::On => ValueTest::On(dates().iter().map(DateTime::date_naive).collect()),
            AttributeKind::Between => ValueTest::Between(match attribute.values.as_slice() {
                [earlier, later] => parse_instant(earlier).zip(parse_instant(later)),
                _ => None,
            }),
        };
        Self {
            exclusive: attribute.kind == AttributeKind::Exclusive,
            test,
        }
    }

    /// Whether the outcome of [`PreparedAttribute::satisfies`] is negated.
    pub(crate) fn exclusive(&self) -> bool {
        self.exclusive
    }

    /// Whether one attribute value satisfies the operator (before EXCLUSIVE negates it).
    pub(crate) fn satisfies(&self, value: &str) -> bool {
        match &self.test {
            ValueTest::Equals(folded) => folded.iter().any(|f| equals_folded(value, f)),
            ValueTest::Contains(folded) => {
                let value = value.to_lowercase();
                folded.iter().any(|f| value.contains(f.as_str()))
            }
            ValueTest::Before(bounds) => {
                parse_instant(value).is_some_and(|at| bounds.iter().any(|bound| at < *bound))
            }
            ValueTest::After(bounds) => {
                parse_instant(value).is_some_and(|at| bounds.iter().any(|bound| at > *bound))
            }
            ValueTest::On(days) => {
                parse_instant(value).is_some_and(|at| days.contains(&at.date_naive()))
            }
            ValueTest::Between(bounds) => bounds.is_some_and(|(earlier, later)| {
                parse_instant(value).is_some_and(|at| earlier <= at && at <= later)
            }),
        }
    }

    /// Whether an attribute holding `values` (empty when absent) matches.
    pub(crate) fn matches(&self, values: &[String]) -> bool {
        values.iter().any(|value| self.satisfies(value)) != self.exclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::endpoint::{Demographic, EndpointStatus, Location, OptOut, User};

    fn at(text: &str) -> DateTime<Utc> {
        parse_instant(text).expect("test dates parse")
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn set(kind: SetKind, values: &[&str]) -> SetDimension {
        SetDimension {
            kind,
            values: strings(values),
        }
    }

    fn attribute(kind: AttributeKind, values: &[&str]) -> AttributeDimension {
        AttributeDimension {
            kind,
            values: strings(values),
        }
    }

    fn metric(comparison: MetricComparison, value: f64, upper: Option<f64>) -> MetricDimension {
        MetricDimension {
            comparison,
            value,
            upper,
        }
    }

    /// An Android phone in São Paulo, seen a day ago, on the gold plan.
    fn facts() -> EndpointFacts {
        EndpointFacts {
            channel: ChannelType::Gcm,
            app_version: "2.1.0".to_string(),
            device_type: "Pixel 8".to_string(),
            make: "Google".to_string(),
            model: "Pixel 8".to_string(),
            platform: "Android".to_string(),
            country: "BR".to_string(),
            latitude: Some(-23.5505),
            longitude: Some(-46.6333),
            attributes: BTreeMap::from([
                ("plan".to_string(), strings(&["Gold"])),
                ("interests".to_string(), strings(&["football", "music"])),
                (
                    "signup".to_string(),
                    strings(&["2026-03-10T14:30:00-03:00"]),
                ),
            ]),
            metrics: BTreeMap::from([("visits".to_string(), 12.0)]),
            user_attributes: BTreeMap::from([("first_name".to_string(), strings(&["Ana"]))]),
            last_seen: Some(at("2026-11-24T12:00:00Z")),
            imported_by: BTreeSet::from(["job-1".to_string()]),
        }
    }

    fn now() -> DateTime<Utc> {
        at("2026-11-25T12:00:00Z")
    }

    fn only(dimensions: SegmentDimensions) -> SegmentDefinition {
        SegmentDefinition {
            name: "test".to_string(),
            rule: SegmentRule::Dimensions(dimensions),
        }
    }

    fn member(definition: &SegmentDefinition, facts: &EndpointFacts) -> bool {
        matches(definition, facts, now(), &NoSegments).expect("no references")
    }

    /// Recency windows end exactly at their length: an endpoint seen exactly 24 h ago is
    /// still active in the last 24 h, one second earlier it is not; never seen is inactive.
    #[test]
    fn recency_windows_are_inclusive_to_the_second() {
        let active_day = Recency {
            duration: RecencyDuration::Hr24,
            kind: RecencyKind::Active,
        };
        let inactive_day = Recency {
            kind: RecencyKind::Inactive,
            ..active_day
        };
        let now = now();
        let day_ago = at("2026-11-24T12:00:00Z");
        let just_before = at("2026-11-24T11:59:59Z");
        assert!(active_day.matches(Some(day_ago), now));
        assert!(!inactive_day.matches(Some(day_ago), now));
        assert!(!active_day.matches(Some(just_before), now));
        assert!(inactive_day.matches(Some(just_before), now));
        assert!(!active_day.matches(None, now));
        assert!(inactive_day.matches(None, now));
        assert!(active_day.matches(Some(at("2026-11-26T00:00:00Z")), now));
        let month = Recency {
            duration: RecencyDuration::Day30,
            kind: RecencyKind::Active,
        };
        assert!(month.matches(Some(at("2026-10-26T12:00:00Z")), now));
        assert!(!month.matches(Some(at("2026-10-26T11:59:59Z")), now));
        assert_eq!(RecencyDuration::Day7.seconds(), 7 * 86_400);
        assert_eq!(RecencyDuration::Day14.seconds(), 14 * 86_400);
    }

    /// Demographic sets ignore case, EXCLUSIVE keeps endpoints with an unknown value, and
    /// every demographic field is filtered by its own dimension.
    #[test]
    fn demographic_sets_ignore_case() {
        let platform = set(SetKind::Inclusive, &["android", "iOS"]);
        assert!(platform.matches("Android"));
        assert!(platform.matches("IOS"));
        assert!(!platform.matches("web"));
        assert!(!platform.matches(""));
        let not_ios = set(SetKind::Exclusive, &["ios"]);
        assert!(not_ios.matches(""));
        assert!(not_ios.matches("android"));
        assert!(!not_ios.matches("iOS"));
        assert!(set(SetKind::Inclusive, &["ÜBER"]).matches("über"));

        let facts = facts();
        let each_field = [
            SegmentDemographics {
                app_version: Some(set(SetKind::Inclusive, &["2.1.0"])),
                ..Default::default()
            },
            SegmentDemographics {
                device_type: Some(set(SetKind::Inclusive, &["pixel 8"])),
                ..Default::default()
            },
            SegmentDemographics {
                make: Some(set(SetKind::Inclusive, &["GOOGLE"])),
                ..Default::default()
            },
            SegmentDemographics {
                model: Some(set(SetKind::Inclusive, &["Pixel 8"])),
                ..Default::default()
            },
            SegmentDemographics {
                platform: Some(set(SetKind::Inclusive, &["android"])),
                ..Default::default()
            },
        ];
        for demographic in each_field {
            let mut dimensions = SegmentDimensions {
                demographic: demographic.clone(),
                ..Default::default()
            };
            assert!(member(&only(dimensions.clone()), &facts), "{demographic:?}");
            let mut other = facts.clone();
            other.app_version = "1.0".to_string();
            other.device_type = "iPhone".to_string();
            other.make = "Apple".to_string();
            other.model = "iPhone".to_string();
            other.platform = "iOS".to_string();
            assert!(
                !member(&only(dimensions.clone()), &other),
                "{demographic:?}"
            );
            dimensions.demographic = demographic;
            assert!(member(&only(dimensions), &facts));
        }
    }

    /// Channel values are channel names, `FCM` standing for `GCM`, in either case.
    #[test]
    fn channel_dimension_reads_channel_names() {
        let push = set(SetKind::Inclusive, &["fcm", "APNS"]);
        assert!(push.matches_channel(ChannelType::Gcm));
        assert!(push.matches_channel(ChannelType::Apns));
        assert!(!push.matches_channel(ChannelType::ApnsSandbox));
        assert!(!push.matches_channel(ChannelType::Email));
        let not_email = set(SetKind::Exclusive, &["EMAIL"]);
        assert!(not_email.matches_channel(ChannelType::Sms));
        assert!(!not_email.matches_channel(ChannelType::Email));
    }

    /// Country codes match in any case; a GPS range holds the points within it (São Paulo
    /// is about 358 km from Rio de Janeiro) and never an endpoint without coordinates.
    #[test]
    fn location_by_country_and_distance() {
        let mut facts = facts();
        let brazil = only(SegmentDimensions {
            location: SegmentLocation {
                country: Some(set(SetKind::Inclusive, &["br", "PT"])),
                gps_point: None,
            },
            ..Default::default()
        });
        assert!(member(&brazil, &facts));
        let distance = haversine_km(-23.5505, -46.6333, -22.9068, -43.1729);
        assert!((355.0..362.0).contains(&distance), "{distance}");
        let near_rio = |range_km| {
            only(SegmentDimensions {
                location: SegmentLocation {
                    country: None,
                    gps_point: Some(GpsPoint {
                        latitude: -22.9068,
                        longitude: -43.1729,
                        range_km,
                    }),
                },
                ..Default::default()
            })
        };
        assert!(member(&near_rio(400.0), &facts));
        assert!(!member(&near_rio(300.0), &facts));
        facts.longitude = None;
        assert!(!member(&near_rio(20_000.0), &facts));
        assert!(haversine_km(0.0, 0.0, 0.0, 180.0) <= std::f64::consts::PI * EARTH_RADIUS_KM);
    }

    /// The cheap latitude test never rules out a point that the exact distance accepts,
    /// including near the poles, across the antimeridian and at antipodes.
    #[test]
    fn latitude_prefilter_never_rejects_a_point_in_range() {
        let latitudes = [-90.0, -89.9, -45.0, -0.001, 0.0, 0.001, 45.0, 89.9, 90.0];
        let longitudes = [-180.0, -179.9, -90.0, 0.0, 90.0, 179.9, 180.0];
        let ranges = [0.001, 1.0, 100.0, 5_000.0, 20_000.0];
        for &center_lat in &latitudes {
            for &center_lon in &longitudes {
                for &range_km in &ranges {
                    let point = GpsPoint {
                        latitude: center_lat,
                        longitude: center_lon,
                        range_km,
                    };
                    for &lat in &latitudes {
                        for &lon in &longitudes {
                            if point.contains(lat, lon) {
                                assert!(!point.surely_outside(lat), "{point:?} {lat} {lon}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// INCLUSIVE, EXCLUSIVE and CONTAINS over multi-valued attributes ignore case; an
    /// endpoint without the attribute is kept only by EXCLUSIVE.
    #[test]
    fn attribute_text_operators() {
        let values = strings(&["Football", "music"]);
        let none: Vec<String> = Vec::new();
        let inclusive = attribute(AttributeKind::Inclusive, &["football"]);
        assert!(inclusive.matches(&values));
        assert!(!inclusive.matches(&none));
        let exclusive = attribute(AttributeKind::Exclusive, &["MUSIC", "art"]);
        assert!(!exclusive.matches(&values));
        assert!(exclusive.matches(&strings(&["art-deco"])));
        assert!(exclusive.matches(&none));
        let contains = attribute(AttributeKind::Contains, &["BALL"]);
        assert!(contains.matches(&values));
        assert!(!contains.matches(&strings(&["music"])));
        assert!(!contains.matches(&none));
    }

    /// Date operators read RFC 3339 timestamps with offsets and plain days; ON compares UTC
    /// days, BETWEEN includes both ends, and values that are not dates never match.
    #[test]
    fn attribute_date_operators() {
        // 2026-03-10T14:30:00-03:00 is 17:30 UTC on the 10th.
        let signup = strings(&["2026-03-10T14:30:00-03:00"]);
        let check = |kind, bounds: &[&str]| attribute(kind, bounds).matches(&signup);
        assert!(check(AttributeKind::Before, &["2026-03-10T17:30:01Z"]));
        assert!(!check(AttributeKind::Before, &["2026-03-10T17:30:00Z"]));
        assert!(check(AttributeKind::After, &["2026-03-10"]));
        assert!(!check(AttributeKind::After, &["2026-03-11"]));
        assert!(check(AttributeKind::On, &["2026-03-10"]));
        assert!(check(
            AttributeKind::On,
            &["2026-01-01", "2026-03-10T23:59:59Z"]
        ));
        assert!(!check(AttributeKind::On, &["2026-03-11"]));
        assert!(check(
            AttributeKind::Between,
            &["2026-03-10T17:30:00Z", "2026-03-10T17:30:00Z"]
        ));
        assert!(check(AttributeKind::Between, &["2026-03-01", "2026-03-31"]));
        assert!(!check(
            AttributeKind::Between,
            &["2026-03-11", "2026-03-31"]
        ));
        assert!(!check(AttributeKind::Between, &["2026-03-01"]));
        let not_a_date = strings(&["soon", "2026-02-30"]);
        for kind in [
            AttributeKind::Before,
            AttributeKind::After,
            AttributeKind::On,
        ] {
            assert!(!attribute(kind, &["2026-03-10"]).matches(&not_a_date));
        }
        let mixed = strings(&["soon", "2025-01-01"]);
        assert!(attribute(AttributeKind::Before, &["2026-01-01"]).matches(&mixed));
    }

    /// Each metric comparison, including equality and BETWEEN's inclusive bounds; an absent
    /// metric meets none of them.
    #[test]
    fn metric_comparisons() {
        use MetricComparison::*;
        let cases = [
            (GreaterThan, 12.0, None, false),
            (GreaterThan, 11.9, None, true),
            (GreaterThanOrEqual, 12.0, None, true),
            (LessThan, 12.0, None, false),
            (LessThan, 12.5, None, true),
            (LessThanOrEqual, 12.0, None, true),
            (Equal, 12.0, None, true),
            (Equal, 12.000001, None, false),
            (Between, 12.0, Some(12.0), true),
            (Between, 1.0, Some(11.0), false),
            (Between, 1.0, None, false),
        ];
        for (comparison, value, upper, expected) in cases {
            let dimension = metric(comparison, value, upper);
            assert_eq!(dimension.matches(Some(12.0)), expected, "{dimension:?}");
            assert!(!dimension.matches(None), "{dimension:?}");
        }
    }

    /// All dimensions of one set must hold, reading endpoint attributes, metrics and user
    /// attributes from their own maps by exact name.
    #[test]
    fn every_dimension_of_a_set_must_hold() {
        let facts = facts();
        let mut dimensions = SegmentDimensions {
            recency: Some(Recency {
                duration: RecencyDuration::Day7,
                kind: RecencyKind::Active,
            }),
            attributes: BTreeMap::from([(
                "plan".to_string(),
                attribute(AttributeKind::Inclusive, &["gold"]),
            )]),
            metrics: BTreeMap::from([(
                "visits".to_string(),
                metric(MetricComparison::GreaterThan, 10.0, None),
            )]),
            user_attributes: BTreeMap::from([(
                "first_name".to_string(),
                attribute(AttributeKind::Inclusive, &["ana"]),
            )]),
            ..Default::default()
        };
        assert!(member(&only(dimensions.clone()), &facts));
        assert!(member(&only(SegmentDimensions::default()), &facts));

        let mut wrong_name = dimensions.clone();
        wrong_name.attributes = BTreeMap::from([(
            "Plan".to_string(),
            attribute(AttributeKind::Inclusive, &["gold"]),
        )]);
        assert!(!member(&only(wrong_name), &facts));

        let mut user_not_endpoint = dimensions.clone();
        user_not_endpoint.user_attributes = BTreeMap::from([(
            "plan".to_string(),
            attribute(AttributeKind::Inclusive, &["gold"]),
        )]);
        assert!(!member(&only(user_not_endpoint), &facts));

        dimensions.metrics.insert(
            "purchases".to_string(),
            metric(MetricComparison::GreaterThanOrEqual, 0.0, None),
        );
        assert!(!member(&only(dimensions), &facts));
    }

    /// INACTIVE and opted-out endpoints stay members (sending filters them), and the facts
    /// of a stored endpoint take device type from its model.
    #[test]
    fn facts_of_a_stored_endpoint() {
        let endpoint = Endpoint {
            project_id: "p".to_string(),
            endpoint_id: "e".to_string(),
            address: "ana@example.com".to_string(),
            channel_type: ChannelType::Email,
            attributes: BTreeMap::from([("plan".to_string(), strings(&["gold"]))]),
            metrics: BTreeMap::from([("visits".to_string(), 3.0)]),
            demographic: Demographic {
                app_version: "1.2".to_string(),
                make: "Apple".to_string(),
                model: "iPad".to_string(),
                platform: "iOS".to_string(),
                ..Demographic::default()
            },
            location: Location {
                country: "PT".to_string(),
                latitude: Some(38.7),
                longitude: Some(-9.1),
                ..Location::default()
            },
            opt_out: OptOut::All,
            status: EndpointStatus::Inactive,
            user: User {
                user_id: "u".to_string(),
                user_attributes: BTreeMap::from([("tier".to_string(), strings(&["a"]))]),
            },
            effective_date: String::new(),
            creation_date: String::new(),
            request_id: String::new(),
            cohort_id: 7,
        };
        let last_seen = Some(at("2026-11-25T10:00:00Z"));
        let facts = EndpointFacts::from_endpoint(&endpoint, last_seen);
        assert_eq!(facts.device_type, "iPad");
        assert_eq!(facts.model, "iPad");
        assert_eq!(facts.country, "PT");
        assert_eq!(facts.coordinates(), Some((38.7, -9.1)));
        assert_eq!(facts.user_attributes["tier"], strings(&["a"]));
        assert_eq!(facts.last_seen, last_seen);
        let tablets = only(SegmentDimensions {
            demographic: SegmentDemographics {
                device_type: Some(set(SetKind::Inclusive, &["ipad"])),
                channel: Some(set(SetKind::Inclusive, &["email"])),
                ..Default::default()
            },
            ..Default::default()
        });
        assert!(member(&tablets, &facts));
    }

    fn library() -> BTreeMap<String, SegmentDefinition> {
        let platform = |name: &str| {
            only(SegmentDimensions {
                demographic: SegmentDemographics {
                    platform: Some(set(SetKind::Inclusive, &[name])),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        BTreeMap::from([
            ("android".to_string(), platform("android")),
            ("ios".to_string(), platform("ios")),
        ])
    }

    fn reference(id: &str) -> SegmentReference {
        SegmentReference {
            id: id.to_string(),
            version: None,
        }
    }

    fn groups(include: Combination, groups: Vec<SegmentGroup>) -> SegmentDefinition {
        SegmentDefinition {
            name: "groups".to_string(),
            rule: SegmentRule::Groups(SegmentGroupList { include, groups }),
        }
    }

    fn group(
        dimensions: Vec<SegmentDimensions>,
        dimension_type: Combination,
        sources: &[&str],
        source_type: SourceCombination,
        segment_type: SetKind,
    ) -> SegmentGroup {
        SegmentGroup {
            dimensions,
            dimension_type,
            source_segments: sources.iter().map(|id| reference(id)).collect(),
            source_type,
            segment_type,
        }
    }

    /// Groups combine dimension sets with ALL/ANY/NONE, start from other segments (ALL or
    /// ANY of them) or exclude them, and the list combines groups with ALL/ANY/NONE.
    #[test]
    fn groups_combine_dimensions_and_segments() {
        let library = library();
        let resolver = |id: &str, _version: Option<u32>| library.get(id);
        let facts = facts();
        let country = |code: &str| SegmentDimensions {
            location: SegmentLocation {
                country: Some(set(SetKind::Inclusive, &[code])),
                gps_point: None,
            },
            ..Default::default()
        };
        let member = |definition: &SegmentDefinition| {
            matches(definition, &facts, now(), &resolver).expect("references resolve")
        };
        let by_dimensions = |combination| {
            groups(
                Combination::All,
                vec![group(
                    vec![country("BR"), country("US")],
                    combination,
                    &[],
                    SourceCombination::All,
                    SetKind::Inclusive,
                )],
            )
        };
        assert!(!member(&by_dimensions(Combination::All)));
        assert!(member(&by_dimensions(Combination::Any)));
        assert!(!member(&by_dimensions(Combination::None)));

        let by_sources = |sources: &[&str], source_type, segment_type| {
            groups(
                Combination::All,
                vec![group(
                    vec![],
                    Combination::All,
                    sources,
                    source_type,
                    segment_type,
                )],
            )
        };
        use SourceCombination as S;
        assert!(member(&by_sources(
            &["android"],
            S::All,
            SetKind::Inclusive
        )));
        assert!(!member(&by_sources(
            &["android", "ios"],
            S::All,
            SetKind::Inclusive
        )));
        assert!(member(&by_sources(
            &["android", "ios"],
            S::Any,
            SetKind::Inclusive
        )));
        assert!(!member(&by_sources(
            &["android"],
            S::Any,
            SetKind::Exclusive
        )));
        assert!(member(&by_sources(&["ios"], S::Any, SetKind::Exclusive)));

        let brazilian_android = group(
            vec![country("BR")],
            Combination::All,
            &["android"],
            S::All,
            SetKind::Inclusive,
        );
        let american = group(
            vec![country("US")],
            Combination::All,
            &[],
            S::All,
            SetKind::Inclusive,
        );
        let list = |include| groups(include, vec![brazilian_android.clone(), american.clone()]);
        assert!(!member(&list(Combination::All)));
        assert!(member(&list(Combination::Any)));
        assert!(!member(&list(Combination::None)));
    }

    /// A segment that refers to itself through others, one that refers to a missing
    /// segment, and one nested nine deep are refused for every endpoint alike; eight deep
    /// evaluates.
    #[test]
    fn reference_errors() {
        let referring = |id: &str| {
            groups(
                Combination::All,
                vec![group(
                    vec![],
                    Combination::All,
                    &[id],
                    SourceCombination::All,
                    SetKind::Inclusive,
                )],
            )
        };
        let cycle = BTreeMap::from([
            ("a".to_string(), referring("b")),
            ("b".to_string(), referring("a")),
        ]);
        let resolver = |id: &str, _version: Option<u32>| cycle.get(id);
        let error = matches(&referring("a"), &facts(), now(), &resolver).unwrap_err();
        assert!(
            matches!(error, SegmentError::ReferenceCycle { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("a -> b -> a"), "{error}");

        let error = matches(&referring("nowhere"), &facts(), now(), &resolver).unwrap_err();
        assert_eq!(
            error,
            SegmentError::UnknownSegment {
                id: "nowhere".to_string(),
                version: None
            }
        );

        // s0 refers to s1 … s7 refers to s8; s8 selects everyone.
        let mut chain: BTreeMap<String, SegmentDefinition> = (0..8)
            .map(|i| (format!("s{i}"), referring(&format!("s{}", i + 1))))
            .collect();
        chain.insert("s8".to_string(), only(SegmentDimensions::default()));
        let resolver = |id: &str, _version: Option<u32>| chain.get(id);
        assert_eq!(
            matches(&referring("s1"), &facts(), now(), &resolver),
            Ok(true)
        );
        let error = matches(&referring("s0"), &facts(), now(), &resolver).unwrap_err();
        assert!(matches!(error, SegmentError::TooDeep { .. }), "{error}");
    }

    /// A reference to an older version of the same segment is not a cycle.
    #[test]
    fn versions_of_one_segment_are_distinct_references() {
        let old = only(SegmentDimensions::default());
        let new = groups(
            Combination::All,
            vec![SegmentGroup {
                source_segments: vec![SegmentReference {
                    id: "s".to_string(),
                    version: Some(1),
                }],
                ..group(
                    vec![],
                    Combination::All,
                    &[],
                    SourceCombination::All,
                    SetKind::Inclusive,
                )
            }],
        );
        let resolver = |_id: &str, version: Option<u32>| match version {
            Some(1) => Some(&old),
            _ => Some(&new),
        };
        let top = groups(
            Combination::All,
            vec![group(
                vec![],
                Combination::All,
                &["s"],
                SourceCombination::All,
                SetKind::Inclusive,
            )],
        );
        assert_eq!(matches(&top, &facts(), now(), &resolver), Ok(true));
    }

    /// An imported segment holds exactly the endpoints its job imported, and another
    /// segment can include or exclude it like any segment.
    #[test]
    fn imported_segments_hold_what_their_job_imported() {
        let imported = |job: &str| SegmentDefinition {
            name: "imported".to_string(),
            rule: SegmentRule::Imported {
                import_job_id: job.to_string(),
            },
        };
        assert!(member(&imported("job-1"), &facts()));
        assert!(!member(&imported("job-2"), &facts()));
        let mut not_imported = facts();
        not_imported.imported_by.clear();
        assert!(!member(&imported("job-1"), &not_imported));

        let library = BTreeMap::from([
            ("list".to_string(), imported("job-1")),
            ("ios".to_string(), library()["ios"].clone()),
        ]);
        let resolver = |id: &str, _version: Option<u32>| library.get(id);
        let list_but_not_ios = groups(
            Combination::All,
            vec![
                group(
                    vec![],
                    Combination::All,
                    &["list"],
                    SourceCombination::All,
                    SetKind::Inclusive,
                ),
                group(
                    vec![],
                    Combination::All,
                    &["ios"],
                    SourceCombination::Any,
                    SetKind::Exclusive,
                ),
            ],
        );
        assert_eq!(
            matches(&list_but_not_ios, &facts(), now(), &resolver),
            Ok(true)
        );
        assert_eq!(
            matches(&list_but_not_ios, &not_imported, now(), &resolver),
            Ok(false)
        );
        assert_eq!(imported("job-1").rule.references().count(), 0);
        assert_eq!(
            fields(&imported(" ").validate("segment")),
            vec!["segment.imported.import_job_id"]
        );
        assert!(imported("job-1").validate("segment").is_empty());
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    /// Every problem of a definition is reported at once, on the field to fix.
    #[test]
    fn validation_names_each_bad_field() {
        let dimensions = SegmentDimensions {
            demographic: SegmentDemographics {
                platform: Some(set(SetKind::Inclusive, &[])),
                channel: Some(set(SetKind::Inclusive, &["EMAIL", "PIGEON"])),
                make: Some(set(SetKind::Exclusive, &["apple", " "])),
                ..Default::default()
            },
            location: SegmentLocation {
                country: Some(set(SetKind::Inclusive, &["BR", "BRA"])),
                gps_point: Some(GpsPoint {
                    latitude: 91.0,
                    longitude: f64::NAN,
                    range_km: 0.0,
                }),
            },
            attributes: BTreeMap::from([
                (
                    "signup".to_string(),
                    attribute(AttributeKind::Before, &["2026-01-01", "soon"]),
                ),
                ("plan".to_string(), attribute(AttributeKind::Inclusive, &[])),
                ("".to_string(), attribute(AttributeKind::Contains, &["x"])),
            ]),
            metrics: BTreeMap::from([
                (
                    "visits".to_string(),
                    metric(MetricComparison::Between, 5.0, Some(1.0)),
                ),
                (
                    "spend".to_string(),
                    metric(MetricComparison::Equal, f64::INFINITY, None),
                ),
                (
                    "score".to_string(),
                    metric(MetricComparison::Between, 1.0, None),
                ),
            ]),
            user_attributes: BTreeMap::from([(
                "birthday".to_string(),
                attribute(AttributeKind::Between, &["2000-12-31", "2000-01-01"]),
            )]),
            ..Default::default()
        };
        let definition = SegmentDefinition {
            name: " ".to_string(),
            rule: SegmentRule::Dimensions(dimensions),
        };
        let violations = definition.validate("segment");
        let mut named = fields(&violations);
        named.sort_unstable();
        let d = "segment.dimensions";
        let mut expected = vec![
            "segment.name".to_string(),
            format!("{d}.demographic.platform.values"),
            format!("{d}.demographic.channel.values[1]"),
            format!("{d}.demographic.make.values[1]"),
            format!("{d}.location.country.values[1]"),
            format!("{d}.location.gps_point.latitude"),
            format!("{d}.location.gps_point.longitude"),
            format!("{d}.location.gps_point.range_km"),
            format!("{d}.attributes[\"signup\"].values"),
            format!("{d}.attributes[\"signup\"].values[1]"),
            format!("{d}.attributes[\"plan\"].values"),
            format!("{d}.attributes[\"\"]"),
            format!("{d}.metrics[\"visits\"].upper"),
            format!("{d}.metrics[\"spend\"].value"),
            format!("{d}.metrics[\"score\"].upper"),
            format!("{d}.user_attributes[\"birthday\"].values"),
        ];
        expected.sort_unstable();
        assert_eq!(named, expected);
        for violation in &violations {
            assert!(!violation.reason.is_empty(), "{violation}");
        }
    }

    /// Groups must exist and say something, and source segments need ids; paths follow
    /// `segment_groups.groups[i]`.
    #[test]
    fn validation_of_groups() {
        let empty = groups(Combination::All, vec![]);
        assert_eq!(
            fields(&empty.validate("s")),
            vec!["s.segment_groups.groups"]
        );
        let mut silent = group(
            vec![],
            Combination::All,
            &[],
            SourceCombination::All,
            SetKind::Inclusive,
        );
        let bad_dimensions = group(
            vec![
                SegmentDimensions::default(),
                SegmentDimensions {
                    metrics: BTreeMap::from([(
                        "m".to_string(),
                        metric(MetricComparison::Equal, f64::NAN, None),
                    )]),
                    ..Default::default()
                },
            ],
            Combination::Any,
            &[""],
            SourceCombination::Any,
            SetKind::Exclusive,
        );
        silent.dimension_type = Combination::None;
        let list = groups(Combination::Any, vec![silent, bad_dimensions]);
        assert_eq!(
            fields(&list.validate("s")),
            vec![
                "s.segment_groups.groups[0]",
                "s.segment_groups.groups[1].dimensions[1].metrics[\"m\"].value",
                "s.segment_groups.groups[1].source_segments[0].id",
            ]
        );
        let fine = only(SegmentDimensions::default());
        assert!(fine.validate("s").is_empty());
    }

    /// Enum names parse in any case and unknown names are reported with the choices.
    #[test]
    fn wire_names() {
        assert_eq!(
            AttributeKind::parse("between"),
            Some(AttributeKind::Between)
        );
        assert_eq!(RecencyDuration::parse("HR_24"), Some(RecencyDuration::Hr24));
        assert_eq!(
            MetricComparison::parse("GREATER_THAN_OR_EQUAL"),
            Some(MetricComparison::GreaterThanOrEqual)
        );
        let mut violations = Vec::new();
        let parsed: Option<Combination> = parse_wire("include", "SOME", &mut violations);
        assert_eq!(parsed, None);
        assert_eq!(violations[0].field, "include");
        assert!(
            violations[0].reason.contains("ALL, ANY, NONE"),
            "{}",
            violations[0]
        );
        for kind in SetKind::ALL {
            assert_eq!(SetKind::parse(kind.as_str()), Some(*kind));
        }
    }
}

/// A stored version of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// The project.
    pub project_id: String,
    /// The segment's id, assigned at creation.
    pub segment_id: String,
    /// 1 at creation, one more at every update.
    pub version: u32,
    /// What it selects.
    pub definition: SegmentDefinition,
    /// RFC 3339.
    pub creation_date: String,
    /// RFC 3339.
    pub last_modified_date: String,
}
