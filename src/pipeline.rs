//! Pipelines: several methods composed in order over one layer-streamed walk, described by a
//! recipe (TOML).
//!
//! A pipeline has at most three stages, in this order:
//! 1. **Structure**, either
//!    - any number of *per-layer* steps (SVD-LLM / SVD / ASVD on some linears, DaSS / Wanda /
//!      magnitude on others) run in **one** calibration walk: each step declares the
//!      statistics it needs ([`Step::needs`]), the walk collects their union once per layer,
//!      and every step compresses its own linears of that layer from them; or
//!    - one *whole-model* step (Basis Sharing, whose groups span layers, or Basis Selection,
//!      whose global allocation needs every layer's scores first), run alone.
//! 2. **Quantization**: LSAQ to a byte budget, on the layers the structure stage produced
//!    (low-rank factors, shared bases and kept sparse values are quantized; RTN), or on the
//!    checkpoint's layers when it is the only step (RTN or GPTQ). LSAQ needs the importance of
//!    every layer before it allocates, so it always takes a second pass.
//!
//! The linears of two per-layer steps must not overlap (a pruned matrix is not factorised
//! again); a step lists its linears with `linears = "all" | "attention" | "mlp" | [kinds]`.
//!
//! # Recipe
//! ```toml
//! name = "dass-mlp+svd-llm-attention+lsaq"
//! [calibration]          # optional; these are the defaults
//! text = "wikitext2"     # wikitext2 | gsm8k | FILE.jsonl | FILE
//! windows = 16
//! seq_len = 2048
//! seed = 3
//!
//! [[step]]
//! method = "dass"        # dass | wanda | magnitude
//! pattern = "2:4"
//! linears = "mlp"
//!
//! [[step]]
//! method = "svd-llm"     # svd-llm | svd | asvd
//! ratio = 0.2
//! linears = "attention"
//!
//! [[step]]
//! method = "lsaq"
//! budget = "100MB"
//! group_size = 128
//! ```
//!
//! # Example
//! ```no_run
//! use llm_compress::pipeline::{Pipeline, Recipe, Step};
//! use llm_compress::prelude::*;
//! let ckpt = Checkpoint::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! let recipe = Recipe::new(vec![Step::svd_llm(0.2), Step::lsaq("120MB")]);
//! let pipeline = Pipeline::new(recipe)?;
//! let (out, report) = pipeline.run(&ckpt, |p| eprintln!("{} {}/{}", p.stage, p.done, p.total))?;
//! println!("{} -> {} linear parameters", report.linear_params_before, report.linear_params_after);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::basis_select::{compress_basis_select, Allocation, BasisFamily, BasisSelectOptions};
use crate::basis_sharing::{compress_basis_sharing, BasisSharingOptions};
use crate::export::{write_compact_with, OutputLayers};
use crate::lowrank::{
    low_rank_layer, low_rank_request, CalibrationText, LowRankMethod, LowRankOptions, Progress,
};
use crate::quant::{
    method_json as lsaq_json, parse_bytes, parse_ladder, quantize_to_budget, LsaqOptions,
    LsaqProgress, LsaqReport,
};
use crate::sparsity::{prune_layer, prune_request, PruneScope, SparsityOptions};
use llm_compress_core::{Linear, LinearKind, SparsityPattern, StatsRequest};
use llm_compress_eval::{
    calibration_windows, walk_layers, CalibrationConfig, DecoderLayer, EvalError, Model, StatsFrom,
    TextSource, WalkEvent,
};
use llm_compress_glu_sparsity::PruneMethod;
use llm_compress_layer_quant::{Quantizer, RankingKind};
use llm_compress_tensor_io::Checkpoint;
use llm_compress_whitening_svd::SvdSolver;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// A pipeline's description: calibration and the steps in order. Parsed from TOML
/// ([`Recipe::from_toml`]) or built in code; recorded in the output's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// A label for reports (default: the step names joined with `+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The calibration every step uses.
    #[serde(default)]
    pub calibration: CalibrationSpec,
    /// The steps, in order (`[[step]]` tables in TOML).
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

/// The calibration every step of a recipe uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationSpec {
    /// `wikitext2` (train split), `gsm8k` (train split), a `.jsonl` corpus, or a text file.
    pub text: String,
    /// Number of calibration windows.
    pub windows: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Seed of the window offsets.
    pub seed: u64,
}

impl Default for CalibrationSpec {
    fn default() -> Self {
        let c = CalibrationConfig::default();
        Self {
            text: "wikitext2".into(),
            windows: c.windows,
            seq_len: c.seq_len,
            seed: c.seed,
        }
    }
}

impl CalibrationSpec {
    /// The walk's window configuration.
    pub fn config(&self) -> CalibrationConfig {
        CalibrationConfig {
            windows: self.windows,
            seq_len: self.seq_len,
            seed: self.seed,
        }
    }
    /// The calibration text.
    pub fn text(&self) -> CalibrationText {
        CalibrationText::named(&self.text)
    }
}

/// Which decoder linears a step touches: `"all"`, `"attention"` (q, k, v, o), `"mlp"` (gate,
/// up, down), or a list of kinds such as `["q", "k", "v"]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Linears {
    /// `all`, `attention`, `mlp` or one kind (`q`, ..., `down`).
    Group(String),
    /// Several kinds or groups.
    List(Vec<String>),
}

impl Linears {
    fn all() -> Self {
        Linears::Group("all".into())
    }
    fn mlp() -> Self {
        Linears::Group("mlp".into())
    }
    /// The kinds selected.
    pub fn kinds(&self) -> Result<Vec<LinearKind>, EvalError> {
        let named = |s: &str| -> Result<Vec<LinearKind>, EvalError> {
            if let Some(scope) = PruneScope::parse(s) {
                return Ok(scope.kinds());
            }
            LinearKind::parse(s).map(|k| vec![k]).ok_or_else(|| {
                EvalError::Input(format!(
                    "unknown linears `{s}`; expected all, attention, mlp or q, k, v, o, gate, up, down"
                ))
            })
        };
        let mut kinds = match self {
            Linears::Group(s) => named(s)?,
            Linears::List(v) => {
                let mut out = Vec::new();
                for s in v {
                    out.extend(named(s)?);
                }
                out
            }
        };
        kinds.sort_by_key(|k| LinearKind::ALL.iter().position(|a| a == k));
        kinds.dedup();
        if kinds.is_empty() {
            return Err(EvalError::Input("a step selects no linears".into()));
        }
        Ok(kinds)
    }
}

fn default_true() -> bool {
    true
}
fn default_pattern() -> String {
    "2:4".into()
}
fn default_group() -> usize {
    2
}
fn default_share() -> Linears {
    Linears::List(["q", "k", "v", "up", "gate"].map(String::from).to_vec())
}
fn default_ladder() -> String {
    "f16,int8,int4".into()
}
fn default_quantizer() -> String {
    "rtn".into()
}
fn default_importance() -> String {
    "jaccard".into()
}
fn default_top_k() -> usize {
    10
}
fn default_stride() -> usize {
    16
}
fn default_compressed() -> String {
    "compressed".into()
}
fn default_global() -> String {
    "global".into()
}
fn default_plain() -> String {
    "plain".into()
}

/// A low-rank step (SVD-LLM, plain SVD or ASVD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowRankStep {
    /// Fraction of the selected linears' parameters removed.
    pub ratio: f64,
    /// The linears factorised (default all).
    #[serde(default = "Linears::all")]
    pub linears: Linears,
    /// Closed-form update of the second factor (SVD-LLM §2.5a).
    #[serde(default)]
    pub update: bool,
    /// `compressed` (sequential, default) or `original` (one pass).
    #[serde(default = "default_compressed")]
    pub whiten_from: String,
    /// `exact` (default) or `randomized` truncated SVD (docs/scale.md).
    #[serde(default = "default_exact", skip_serializing_if = "is_exact")]
    pub svd_solver: String,
}

/// The solver a recipe names.
fn parse_solver(name: &str) -> Result<SvdSolver, EvalError> {
    SvdSolver::parse(name).ok_or_else(|| {
        EvalError::Input(format!(
            "svd_solver must be `exact` or `randomized`, got `{name}`"
        ))
    })
}

fn default_exact() -> String {
    "exact".into()
}
fn is_exact(s: &str) -> bool {
    s == "exact"
}

/// A pruning step (DaSS, Wanda or magnitude).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneStep {
    /// `N:M` (N zeros per M) or `unstructured`.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// Pruned fraction for `unstructured` (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
    /// DaSS exponent (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Default `mlp`; attention linears are pruned with Wanda when the method is DaSS.
    #[serde(default = "Linears::mlp")]
    pub linears: Linears,
}

/// A Basis Sharing step (whole model; must be the only structural step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasisSharingStep {
    /// Fraction of decoder-linear parameters removed (a basis counted once).
    pub ratio: f64,
    /// Consecutive layers per group.
    #[serde(default = "default_group")]
    pub group_size: usize,
    /// Kinds sharing one basis per group (the others are compressed per layer).
    #[serde(default = "default_share")]
    pub share: Linears,
    /// Closed-form update of the coefficients (off by default).
    #[serde(default)]
    pub update: bool,
    /// `exact` (default) or `randomized` truncated SVD (docs/scale.md).
    #[serde(default = "default_exact", skip_serializing_if = "is_exact")]
    pub svd_solver: String,
}

/// A Basis Selection step (whole model; must be the only structural step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasisSelectStep {
    /// Fraction of decoder-linear parameters removed.
    pub ratio: f64,
    /// `plain` or `whitened`.
    #[serde(default = "default_plain")]
    pub bases: String,
    /// `global` or `per-matrix`.
    #[serde(default = "default_global")]
    pub allocation: String,
    /// Residual bases per matrix, paid out of the budget.
    #[serde(default)]
    pub residual_rank: usize,
    /// Closed-form refit of the kept coefficients.
    #[serde(default)]
    pub refit: bool,
    /// The linears compressed (default all).
    #[serde(default = "Linears::all")]
    pub linears: Linears,
}

/// An LSAQ step (last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LsaqStep {
    /// Byte budget of the tensor file: `120MB`, `110MiB`, `123456`.
    pub budget: String,
    /// Precisions a layer may get, e.g. `f16,int8,int4`.
    #[serde(default = "default_ladder")]
    pub ladder: String,
    /// int4 scale group (32, 64, 128; per output channel when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_size: Option<usize>,
    /// `rtn` or `gptq` (GPTQ only as the only step).
    #[serde(default = "default_quantizer")]
    pub quantizer: String,
    /// `jaccard`, `cosine`, `random` or `reversed`.
    #[serde(default = "default_importance")]
    pub importance: String,
    /// Size of the logit-lens top-k token sets.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Every n-th position of each window is scored.
    #[serde(default = "default_stride")]
    pub position_stride: usize,
    /// Seed of the random ranking.
    #[serde(default)]
    pub seed: u64,
    /// Store embeddings (and an untied head) as f16.
    #[serde(default = "default_true")]
    pub f16_embeddings: bool,
}

/// One step of a recipe; the TOML key `method` selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Step {
    /// SVD-LLM: truncation-aware whitening (docs/svd-llm.md).
    SvdLlm(LowRankStep),
    /// Plain truncated SVD of the weight (baseline).
    Svd(LowRankStep),
    /// Activation-aware SVD (baseline).
    Asvd(LowRankStep),
    /// DaSS: GLU-aware N:M pruning of the MLP (docs/dass.md).
    Dass(PruneStep),
    /// Wanda: |W| times the input-channel norm.
    Wanda(PruneStep),
    /// Magnitude pruning (baseline).
    Magnitude(PruneStep),
    /// Basis Sharing: one basis per group of layers (docs/basis-sharing.md).
    BasisSharing(BasisSharingStep),
    /// Basis Selection: keep the singular bases the calibration text uses (docs/basis-select.md).
    BasisSelect(BasisSelectStep),
    /// LSAQ: per-layer precision from a byte budget (docs/lsaq.md).
    Lsaq(LsaqStep),
}

impl Step {
    /// SVD-LLM at `ratio` on every decoder linear.
    pub fn svd_llm(ratio: f64) -> Self {
        Step::SvdLlm(LowRankStep {
            ratio,
            linears: Linears::all(),
            update: false,
            whiten_from: default_compressed(),
            svd_solver: default_exact(),
        })
    }
    /// DaSS at `pattern` (e.g. `2:4`) on the MLP.
    pub fn dass(pattern: &str) -> Self {
        Step::Dass(PruneStep {
            pattern: pattern.into(),
            sparsity: None,
            alpha: None,
            linears: Linears::mlp(),
        })
    }
    /// LSAQ to `budget` (e.g. `120MB`) with the default ladder, int4 groups of 128, RTN.
    pub fn lsaq(budget: &str) -> Self {
        Step::Lsaq(LsaqStep {
            budget: budget.into(),
            ladder: default_ladder(),
            group_size: Some(128),
            quantizer: default_quantizer(),
            importance: default_importance(),
            top_k: default_top_k(),
            position_stride: default_stride(),
            seed: 0,
            f16_embeddings: true,
        })
    }
    /// Restrict a per-layer step to some linears (`"attention"`, `"mlp"`, ...); other steps
    /// are returned unchanged.
    pub fn on(mut self, linears: &str) -> Self {
        match &mut self {
            Step::SvdLlm(s) | Step::Svd(s) | Step::Asvd(s) => {
                s.linears = Linears::Group(linears.into())
            }
            Step::Dass(s) | Step::Wanda(s) | Step::Magnitude(s) => {
                s.linears = Linears::Group(linears.into())
            }
            _ => {}
        }
        self
    }

    /// The method name (`svd-llm`, `dass`, `lsaq`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Step::SvdLlm(_) => "svd-llm",
            Step::Svd(_) => "svd",
            Step::Asvd(_) => "asvd",
            Step::Dass(_) => "dass",
            Step::Wanda(_) => "wanda",
            Step::Magnitude(_) => "magnitude",
            Step::BasisSharing(_) => "basis-sharing",
            Step::BasisSelect(_) => "basis-select",
            Step::Lsaq(_) => "lsaq",
        }
    }

    /// A short label with the step's main parameter (`svd-llm 0.2 attention`, `dass 2:4`).
    pub fn label(&self) -> String {
        let lin = |l: &Linears| match l {
            Linears::Group(g) if g == "all" => String::new(),
            Linears::Group(g) => format!(" {g}"),
            Linears::List(v) => format!(" {}", v.join(",")),
        };
        match self {
            Step::SvdLlm(s) | Step::Svd(s) | Step::Asvd(s) => {
                format!("{} {}{}", self.name(), s.ratio, lin(&s.linears))
            }
            Step::Dass(s) | Step::Wanda(s) | Step::Magnitude(s) => {
                let p = match (s.pattern.as_str(), s.sparsity) {
                    ("unstructured", Some(x)) => format!("{}%", (100.0 * x).round()),
                    ("unstructured", None) => "50%".into(),
                    (p, _) => p.to_string(),
                };
                let scope = match &s.linears {
                    Linears::Group(g) if g == "mlp" => String::new(),
                    l => lin(l),
                };
                format!("{} {p}{scope}", self.name())
            }
            Step::BasisSharing(s) => format!("basis-sharing {}", s.ratio),
            Step::BasisSelect(s) => format!("basis-select {}", s.ratio),
            Step::Lsaq(s) => format!("lsaq {}", s.budget),
        }
    }

    /// What this step needs from the calibration walk, when it is a per-layer step: the
    /// statistics and which hidden-state stream they come from.
    pub fn needs(&self) -> Result<Option<(StatsRequest, StatsFrom)>, EvalError> {
        Ok(match resolve_layer_step(self)? {
            Some(LayerStep::LowRank(o)) => Some(low_rank_request(&o)),
            Some(LayerStep::Prune(o, _)) => Some((prune_request(&o), StatsFrom::Compressed)),
            None => None,
        })
    }
}

impl Recipe {
    /// A recipe with the default calibration.
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            name: None,
            calibration: CalibrationSpec::default(),
            steps,
        }
    }

    /// Parse a TOML recipe.
    pub fn from_toml(text: &str) -> Result<Self, EvalError> {
        toml::from_str(text).map_err(|e| EvalError::Input(format!("bad recipe: {e}")))
    }

    /// Read and parse a TOML recipe file.
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EvalError::Input(format!("cannot read recipe {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| EvalError::Input(format!("{}: {e}", path.display())))
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> Result<String, EvalError> {
        toml::to_string(self).map_err(|e| EvalError::Input(format!("recipe to TOML: {e}")))
    }

    /// The recipe's name, or the step labels joined with ` + `.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.steps
                .iter()
                .map(Step::label)
                .collect::<Vec<_>>()
                .join(" + ")
        })
    }
}

/// A per-layer step with its resolved options.
#[derive(Clone, Debug)]
enum LayerStep {
    LowRank(LowRankOptions),
    Prune(SparsityOptions, Vec<LinearKind>),
}

impl LayerStep {
    fn kinds(&self) -> &[LinearKind] {
        match self {
            LayerStep::LowRank(o) => &o.kinds,
            LayerStep::Prune(_, k) => k,
        }
    }
}

fn stats_from(s: &str) -> Result<StatsFrom, EvalError> {
    match s {
        "compressed" => Ok(StatsFrom::Compressed),
        "original" => Ok(StatsFrom::Original),
        _ => Err(EvalError::Input(format!(
            "whiten_from must be `compressed` or `original`, got `{s}`"
        ))),
    }
}

/// The per-layer options of `step` (without calibration), or `None` for a whole-model step.
fn resolve_layer_step(step: &Step) -> Result<Option<LayerStep>, EvalError> {
    Ok(match step {
        Step::SvdLlm(s) | Step::Svd(s) | Step::Asvd(s) => {
            let method = LowRankMethod::parse(step.name()).ok_or_else(|| {
                EvalError::Input(format!("unknown low-rank method {}", step.name()))
            })?;
            llm_compress_core::budget::check_ratio(s.ratio)?;
            let mut o = LowRankOptions::new(method, s.ratio);
            o.kinds = s.linears.kinds()?;
            o.update = s.update;
            o.whiten_from = stats_from(&s.whiten_from)?;
            o.svd_solver = parse_solver(&s.svd_solver)?;
            Some(LayerStep::LowRank(o))
        }
        Step::Dass(s) | Step::Wanda(s) | Step::Magnitude(s) => {
            let method = PruneMethod::parse(step.name()).ok_or_else(|| {
                EvalError::Input(format!("unknown pruning method {}", step.name()))
            })?;
            let pattern: SparsityPattern = s.pattern.parse().map_err(|e| {
                EvalError::Input(format!(
                    "bad pattern `{}` ({e}); expected N:M (e.g. 2:4) or unstructured",
                    s.pattern
                ))
            })?;
            let mut o = SparsityOptions::new(method, pattern);
            if let Some(x) = s.sparsity {
                if !matches!(pattern, SparsityPattern::Unstructured) {
                    return Err(EvalError::Input(
                        "sparsity is fixed by an N:M pattern; set it only with `unstructured`"
                            .into(),
                    ));
                }
                o.sparsity = x;
            }
            if let Some(a) = s.alpha {
                o.alpha = a;
            }
            o.scope = PruneScope::All;
            o.validate()?;
            Some(LayerStep::Prune(o, s.linears.kinds()?))
        }
        Step::BasisSharing(_) | Step::BasisSelect(_) | Step::Lsaq(_) => None,
    })
}

fn lsaq_options(s: &LsaqStep) -> Result<LsaqOptions, EvalError> {
    let mut o = LsaqOptions::new(parse_bytes(&s.budget)?);
    o.ladder = parse_ladder(&s.ladder)?;
    if let Some(g) = s.group_size {
        if ![32, 64, 128].contains(&g) {
            return Err(EvalError::Input(format!(
                "lsaq group_size must be 32, 64 or 128, got {g}"
            )));
        }
    }
    o.group_size = s.group_size;
    o.quantizer = Quantizer::parse(&s.quantizer)
        .ok_or_else(|| EvalError::Input(format!("unknown quantizer `{}`", s.quantizer)))?;
    o.importance = RankingKind::parse(&s.importance)
        .ok_or_else(|| EvalError::Input(format!("unknown importance `{}`", s.importance)))?;
    o.top_k = s.top_k;
    o.position_stride = s.position_stride;
    o.seed = s.seed;
    o.f16_embeddings = s.f16_embeddings;
    Ok(o)
}

/// The structure stage of a pipeline.
#[derive(Clone, Debug)]
enum Structure {
    None,
    Layerwise(Vec<LayerStep>),
    BasisSharing(BasisSharingOptions),
    BasisSelect(BasisSelectOptions),
}

/// A validated recipe, ready to run.
#[derive(Clone, Debug)]
pub struct Pipeline {
    recipe: Recipe,
    text: CalibrationText,
    structure: Structure,
    quantize: Option<LsaqOptions>,
}

/// Progress of a pipeline stage, for a caller-owned display.
#[derive(Clone, Copy, Debug)]
pub struct PipelineProgress<'a> {
    /// `walk`, `basis-sharing`, `basis-select`, `importance` or `quantize`.
    pub stage: &'a str,
    /// Units (layers or groups) done in this stage.
    pub done: usize,
    /// Units in this stage.
    pub total: usize,
}

/// Time spent in one stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageTiming {
    /// The stage's name.
    pub stage: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What a pipeline run produced.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineReport {
    /// The recipe's label.
    pub label: String,
    /// Decoder-linear parameters of the checkpoint.
    pub linear_params_before: usize,
    /// Stored decoder-linear parameters after every step (kept values of sparse layers, a
    /// shared basis once).
    pub linear_params_after: usize,
    /// Bytes of the decoder linears as stored in memory after every step.
    pub linear_bytes_after: usize,
    /// Time per stage.
    pub stages: Vec<StageTiming>,
    /// The LSAQ allocation, when the recipe quantizes.
    pub lsaq: Option<LsaqReport>,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
}

impl Pipeline {
    /// Validate `recipe`: known methods and options, LSAQ at most once and last, a whole-model
    /// step (basis sharing or selection) alone before it, per-layer steps on disjoint linears.
    pub fn new(recipe: Recipe) -> Result<Self, EvalError> {
        if recipe.steps.is_empty() {
            return Err(EvalError::Input("the recipe has no step".into()));
        }
        let c = &recipe.calibration;
        if c.windows == 0 || c.seq_len < 2 {
            return Err(EvalError::Input(
                "calibration needs at least one window of two tokens".into(),
            ));
        }
        let (structural, quantize) = match recipe.steps.split_last() {
            Some((Step::Lsaq(q), rest)) => (rest, Some(lsaq_options(q)?)),
            _ => (&recipe.steps[..], None),
        };
        if structural.iter().any(|s| matches!(s, Step::Lsaq(_))) {
            return Err(EvalError::Input(
                "lsaq must be the last step (it quantizes what the steps before produced)".into(),
            ));
        }
        let whole: Vec<&Step> = structural
            .iter()
            .filter(|s| matches!(s, Step::BasisSharing(_) | Step::BasisSelect(_)))
            .collect();
        let cfg = c.config();
        let text = c.text();
        let structure = if let Some(first) = whole.first() {
            if structural.len() > 1 {
                return Err(EvalError::Input(format!(
                    "{} compresses every linear of the model and cannot be combined with another \
                     structural step (only lsaq may follow it)",
                    first.name()
                )));
            }
            match first {
                Step::BasisSharing(s) => {
                    llm_compress_core::budget::check_ratio(s.ratio)?;
                    let mut o = BasisSharingOptions::new(s.ratio);
                    o.group_size = s.group_size;
                    o.shared = s.share.kinds()?;
                    o.update = s.update;
                    o.svd_solver = parse_solver(&s.svd_solver)?;
                    o.calibration = cfg.clone();
                    o.calibration_text = text;
                    Structure::BasisSharing(o)
                }
                Step::BasisSelect(s) => {
                    llm_compress_core::budget::check_ratio(s.ratio)?;
                    let mut o = BasisSelectOptions::new(s.ratio, text);
                    o.bases = BasisFamily::parse(&s.bases).ok_or_else(|| {
                        EvalError::Input(format!(
                            "bases must be plain or whitened, got `{}`",
                            s.bases
                        ))
                    })?;
                    o.allocation = match s.allocation.as_str() {
                        "global" => Allocation::Global,
                        "per-matrix" => Allocation::PerMatrix,
                        a => {
                            return Err(EvalError::Input(format!(
                                "allocation must be global or per-matrix, got `{a}`"
                            )))
                        }
                    };
                    o.residual_rank = s.residual_rank;
                    o.refit = s.refit;
                    o.kinds = s.linears.kinds()?;
                    o.calibration = cfg.clone();
                    Structure::BasisSelect(o)
                }
                _ => Structure::None,
            }
        } else if structural.is_empty() {
            Structure::None
        } else {
            let mut steps = Vec::new();
            let mut taken: Vec<LinearKind> = Vec::new();
            for s in structural {
                let mut ls = resolve_layer_step(s)?.ok_or_else(|| {
                    EvalError::Input(format!("{} is not a per-layer step", s.name()))
                })?;
                if let Some(k) = ls.kinds().iter().find(|k| taken.contains(k)) {
                    return Err(EvalError::Input(format!(
                        "two steps compress the {} linears; give each step its own `linears`",
                        k.short()
                    )));
                }
                taken.extend_from_slice(ls.kinds());
                match &mut ls {
                    LayerStep::LowRank(o) => {
                        o.calibration = cfg.clone();
                        o.calibration_text = text.clone();
                    }
                    LayerStep::Prune(o, _) => {
                        o.calibration = cfg.clone();
                        o.calibration_text = text.clone();
                    }
                }
                steps.push(ls);
            }
            Structure::Layerwise(steps)
        };
        let quantize = quantize.map(|mut q| {
            q.calibration = cfg;
            q.calibration_text = c.text();
            q
        });
        if let (Some(q), false) = (&quantize, matches!(structure, Structure::None)) {
            if q.quantizer == Quantizer::Gptq {
                return Err(EvalError::Input(
                    "GPTQ needs the checkpoint's own layers: use it as the only step, or \
                     quantizer = \"rtn\" after other steps"
                        .into(),
                ));
            }
        }
        Ok(Self {
            text: recipe.calibration.text(),
            recipe,
            structure,
            quantize,
        })
    }

    /// Calibrate on `text` instead of the recipe's named text (e.g. already tokenized text).
    pub fn with_calibration_text(mut self, text: CalibrationText) -> Self {
        match &mut self.structure {
            Structure::None => {}
            Structure::Layerwise(steps) => {
                for s in steps {
                    match s {
                        LayerStep::LowRank(o) => o.calibration_text = text.clone(),
                        LayerStep::Prune(o, _) => o.calibration_text = text.clone(),
                    }
                }
            }
            Structure::BasisSharing(o) => o.calibration_text = text.clone(),
            Structure::BasisSelect(o) => o.calibration_text = text.clone(),
        }
        if let Some(q) = &mut self.quantize {
            q.calibration_text = text.clone();
        }
        self.text = text;
        self
    }

    /// The recipe this pipeline runs.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Whether the output should store embeddings as f16 (LSAQ's byte budget covers them).
    pub fn f16_embeddings(&self) -> bool {
        self.quantize.as_ref().is_some_and(|q| q.f16_embeddings)
    }

    /// Run every stage on `ckpt`. `progress` sees each stage's progress.
    pub fn run(
        &self,
        ckpt: &Checkpoint,
        mut progress: impl FnMut(&PipelineProgress),
    ) -> Result<(OutputLayers, PipelineReport), EvalError> {
        let t0 = Instant::now();
        let mut stages = Vec::new();
        let mut emit = |stage: &str, done: usize, total: usize| {
            progress(&PipelineProgress { stage, done, total })
        };
        let mut out: Option<OutputLayers> = match &self.structure {
            Structure::None => None,
            Structure::Layerwise(steps) => {
                let t = Instant::now();
                let o = self.walk(ckpt, steps, |d, n| emit("walk", d, n))?;
                stages.push(StageTiming {
                    stage: "walk".into(),
                    seconds: t.elapsed().as_secs_f64(),
                });
                Some(o)
            }
            Structure::BasisSharing(o) => {
                let t = Instant::now();
                let (out, _) = compress_basis_sharing(ckpt, o, |p| {
                    let crate::basis_sharing::Progress::Group { done, total } = p;
                    emit("basis-sharing", done, total)
                })?;
                stages.push(StageTiming {
                    stage: "basis-sharing".into(),
                    seconds: t.elapsed().as_secs_f64(),
                });
                Some(out)
            }
            Structure::BasisSelect(o) => {
                let t = Instant::now();
                let (out, _) = compress_basis_select(ckpt, o, None, |p| {
                    let Progress::Layer { done, total } = p;
                    emit("basis-select", done, total)
                })?;
                stages.push(StageTiming {
                    stage: "basis-select".into(),
                    seconds: t.elapsed().as_secs_f64(),
                });
                Some(out)
            }
        };
        let mut lsaq = None;
        if let Some(q) = &self.quantize {
            let t = Instant::now();
            let layers = out.take().map(|o| o.layers);
            let (o, r) = quantize_to_budget(ckpt, layers, q, |p| match p {
                LsaqProgress::Importance { done, total } => emit("importance", done, total),
                LsaqProgress::Quantize { done, total } => emit("quantize", done, total),
            })?;
            stages.push(StageTiming {
                stage: "lsaq".into(),
                seconds: t.elapsed().as_secs_f64(),
            });
            out = Some(o);
            lsaq = Some(r);
        }
        let out = out.ok_or_else(|| EvalError::Input("the recipe has no step".into()))?;
        let linear = |f: fn(&Linear) -> usize| -> usize {
            out.layers
                .iter()
                .flat_map(|l| LinearKind::ALL.map(|k| f(l.linear(k))))
                .sum()
        };
        let report = PipelineReport {
            label: self.recipe.label(),
            linear_params_before: ckpt.config.linear_params(),
            linear_params_after: distinct_linear_params(&out.layers),
            linear_bytes_after: linear(Linear::storage_bytes),
            stages,
            lsaq,
            wall_s: t0.elapsed().as_secs_f64(),
        };
        Ok((out, report))
    }

    /// The per-layer stage: one walk, the union of the steps' statistics, every step applied to
    /// its own linears of each layer.
    fn walk(
        &self,
        ckpt: &Checkpoint,
        steps: &[LayerStep],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<OutputLayers, EvalError> {
        let mut request = StatsRequest::NONE;
        let mut from: Option<StatsFrom> = None;
        for s in &self.recipe.steps {
            if let Some((r, f)) = s.needs()? {
                request = request.union(r);
                from = Some(match (from, f) {
                    (None, f) => f,
                    (Some(a), b) if a == b => a,
                    _ => StatsFrom::Both,
                });
            }
        }
        let from = from.unwrap_or(StatsFrom::Compressed);
        let c = &self.recipe.calibration;
        let tokens = self.text.tokens(ckpt)?;
        let windows = calibration_windows(&tokens, &c.config())?;
        let base = Model::load_without_layers(ckpt)?;
        let compressors: Vec<Option<Box<dyn llm_compress_core::MatrixCompressor>>> = steps
            .iter()
            .map(|s| match s {
                LayerStep::LowRank(o) => {
                    Some(o.method.compressor_with_solver(o.ratio, o.svd_solver))
                }
                LayerStep::Prune(..) => None,
            })
            .collect();
        let layers = walk_layers(
            ckpt,
            &base,
            &windows,
            request,
            from,
            |l, layer: &mut DecoderLayer, calib| {
                for (s, comp) in steps.iter().zip(&compressors) {
                    let new = match (s, comp) {
                        (LayerStep::LowRank(o), Some(c)) => {
                            low_rank_layer(o, c.as_ref(), l, layer, calib)?
                        }
                        (LayerStep::Prune(o, kinds), _) => prune_layer(o, kinds, l, layer, calib)?,
                        (LayerStep::LowRank(_), None) => {
                            return Err(EvalError::Input("low-rank step without compressor".into()))
                        }
                    };
                    for (k, lin) in new {
                        *layer.linear_mut(k) = lin;
                    }
                }
                Ok(())
            },
            |WalkEvent::LayerDone { layer, layers }| progress(layer + 1, layers),
        )?;
        Ok(OutputLayers { base, layers })
    }

    /// The manifest's `method` record: the recipe and, with LSAQ, its allocation.
    pub fn method_json(&self, report: &PipelineReport) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": "pipeline",
            "label": report.label,
            "recipe": self.recipe,
        });
        if let (Some(q), Some(r)) = (&self.quantize, &report.lsaq) {
            v["lsaq"] = lsaq_json(q, r);
        }
        v
    }

    /// Write `out` as a compact folder whose manifest records the recipe.
    pub fn write_compact(
        &self,
        ckpt: &Checkpoint,
        out: &OutputLayers,
        report: &PipelineReport,
        dir: &Path,
    ) -> Result<(), EvalError> {
        let c = &self.recipe.calibration;
        write_compact_with(
            ckpt,
            out,
            dir,
            self.method_json(report),
            serde_json::to_value(c).unwrap_or_default(),
            report.linear_params_before,
            self.f16_embeddings(),
        )
    }
}

/// Decoder-linear parameters stored, a shared basis counted once.
fn distinct_linear_params(layers: &[DecoderLayer]) -> usize {
    let linears: Vec<&Linear> = layers
        .iter()
        .flat_map(|l| LinearKind::ALL.map(|k| l.linear(k)))
        .collect();
    llm_compress_core::shared::distinct_param_count(linears)
}

impl CalibrationText {
    /// The calibration text named `wikitext2` (train split), `gsm8k` (train split), `random`
    /// (seeded random token ids, for models without text), a `.jsonl` corpus, or a path to a
    /// text file.
    pub fn named(name: &str) -> Self {
        if name == "random" {
            return CalibrationText::RandomTokens { seed: 0 };
        }
        CalibrationText::Source(match name {
            "wikitext2" | "wikitext2-train" => TextSource::WikiText2Train,
            "gsm8k" | "gsm8k-train" => TextSource::Gsm8kTrain,
            other if other.ends_with(".jsonl") => TextSource::Jsonl(other.into()),
            other => TextSource::File(other.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_round_trips_through_toml() {
        let r = Recipe::from_toml(
            r#"
            name = "combo"
            [calibration]
            windows = 4
            [[step]]
            method = "dass"
            pattern = "2:4"
            [[step]]
            method = "svd-llm"
            ratio = 0.2
            linears = ["q", "k", "v", "o"]
            [[step]]
            method = "lsaq"
            budget = "100MB"
            group_size = 128
            "#,
        )
        .unwrap();
        assert_eq!(r.calibration.windows, 4);
        assert_eq!(r.calibration.seq_len, 2048);
        assert_eq!(r.steps.len(), 3);
        assert_eq!(Recipe::from_toml(&r.to_toml().unwrap()).unwrap(), r);
        let p = Pipeline::new(r).unwrap();
        assert!(p.f16_embeddings());
        // One walk: norms (DaSS) and the Gram (SVD-LLM), both from the compressed prefix.
        let (mut req, mut from) = (StatsRequest::NONE, vec![]);
        for s in &p.recipe().steps {
            if let Some((r, f)) = s.needs().unwrap() {
                req = req.union(r);
                from.push(f);
            }
        }
        assert!(req.gram && req.channel_norms);
        assert_eq!(from, vec![StatsFrom::Compressed; 2]);
    }

    #[test]
    fn bad_recipes_are_input_errors() {
        let bad = [
            ("", "no step"),
            ("[[step]]\nmethod = \"svd-llm\"\nratio = 1.5", "ratio"),
            ("[[step]]\nmethod = \"zip\"", "bad recipe"),
            ("[[step]]\nmethod = \"svd-llm\"\nratio = 0.2\nratoi = 3", "bad recipe"),
            ("[[step]]\nmethod = \"lsaq\"\nbudget = \"1GB\"\n[[step]]\nmethod = \"svd\"\nratio = 0.2", "last"),
            ("[[step]]\nmethod = \"dass\"\n[[step]]\nmethod = \"wanda\"", "two steps"),
            ("[[step]]\nmethod = \"basis-sharing\"\nratio = 0.2\n[[step]]\nmethod = \"dass\"", "cannot be combined"),
            ("[[step]]\nmethod = \"svd-llm\"\nratio = 0.2\n[[step]]\nmethod = \"lsaq\"\nbudget = \"1GB\"\nquantizer = \"gptq\"", "GPTQ"),
            ("[[step]]\nmethod = \"dass\"\npattern = \"5:4\"", "pattern"),
            ("[[step]]\nmethod = \"svd-llm\"\nratio = 0.2\nlinears = \"qq\"", "unknown linears"),
            ("[[step]]\nmethod = \"lsaq\"\nbudget = \"12XB\"", "unit"),
            ("[calibration]\nwindows = 0\n[[step]]\nmethod = \"svd\"\nratio = 0.2", "window"),
        ];
        for (text, want) in bad {
            let err = Recipe::from_toml(text).and_then(Pipeline::new).err();
            let msg = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(want), "{text:?}: got {msg:?}, want {want:?}");
        }
    }

    #[test]
    fn linears_select_kinds() {
        use LinearKind::*;
        assert_eq!(
            Linears::Group("mlp".into()).kinds().unwrap(),
            vec![Gate, Up, Down]
        );
        assert_eq!(
            Linears::List(vec!["v".into(), "q".into(), "q".into()])
                .kinds()
                .unwrap(),
            vec![Q, V]
        );
        assert_eq!(
            Step::svd_llm(0.2).on("attention").label(),
            "svd-llm 0.2 attention"
        );
        assert_eq!(Step::dass("2:4").label(), "dass 2:4");
    }
}
