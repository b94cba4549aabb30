//! Reports of compression runs: a Markdown table, JSON, and a plot of perplexity against model
//! size (SVG and PNG drawn from one scene, so both pictures show the same points).

use serde::{Deserialize, Serialize};

/// One evaluated model: the dense original or a compressed output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// What the run was (`dense`, `svd-llm 0.2`, a recipe's label).
    pub label: String,
    /// Where the model was read from.
    pub path: String,
    /// Bytes of the model's tensors: the tensor file of a compressed folder; for the dense
    /// original, its parameters at 4 bytes each (f32, as it runs).
    pub bytes: u64,
    /// Decoder-linear parameters stored (a shared basis once, kept values of sparse layers).
    pub linear_params: usize,
    /// Perplexity.
    pub ppl: f64,
    /// Tokens per second of the evaluation.
    pub tokens_per_s: f64,
    /// Seconds the compression took, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress_s: Option<f64>,
    /// Whether this is the uncompressed model (the reference point).
    pub dense: bool,
}

/// A set of runs evaluated with one protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The original model's path.
    pub model: String,
    /// The evaluation text (`wikitext2`, `gsm8k`, a file).
    pub data: String,
    /// Evaluation windows.
    pub windows: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// The dense run and the compressed ones.
    pub runs: Vec<RunResult>,
}

const MB: f64 = 1e6;

impl Report {
    fn dense(&self) -> Option<&RunResult> {
        self.runs.iter().find(|r| r.dense)
    }

    /// The report as a Markdown table (sizes in MB = 10⁶ bytes; ratios against the dense run).
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "Perplexity on {} ({} windows of {} tokens), model {}\n\n",
            self.data, self.windows, self.seq_len, self.model
        );
        s.push_str(
            "| model | size (MB) | size vs dense | decoder linear params | perplexity | ppl vs dense | tokens/s |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        let d = self.dense();
        for r in &self.runs {
            let rel = |a: f64, b: Option<f64>| match b {
                Some(b) if b > 0.0 && !r.dense => format!("{:.3}", a / b),
                _ => "1".into(),
            };
            s.push_str(&format!(
                "| {} | {:.1} | {} | {} | {:.2} | {} | {:.0} |\n",
                r.label,
                r.bytes as f64 / MB,
                rel(r.bytes as f64, d.map(|d| d.bytes as f64)),
                r.linear_params,
                r.ppl,
                rel(r.ppl, d.map(|d| d.ppl)),
                r.tokens_per_s
            ));
        }
        s
    }

    /// The plot as an SVG document.
    pub fn plot_svg(&self) -> String {
        self.scene().to_svg()
    }

    /// The plot as a PNG image.
    pub fn plot_png(&self) -> Result<Vec<u8>, std::io::Error> {
        self.scene().to_png()
    }

    /// Perplexity (log scale when it spans more than a factor 3) against size in MB; the dense
    /// run is a black square, every other run a disc coloured by its method (the label's first
    /// word) with a legend entry.
    fn scene(&self) -> Scene {
        let (w, h) = (960.0, 560.0);
        let (left, right, top, bottom) = (80.0, 330.0, 70.0, 70.0);
        let (x0, x1, y0, y1) = (left, w - right, h - bottom, top);
        let mut sc = Scene::new(w, h);
        sc.text(
            w / 2.0,
            22.0,
            "perplexity against model size",
            2,
            BLACK,
            Anchor::Middle,
        );
        sc.text(
            w / 2.0,
            40.0,
            &format!(
                "{} on {}, {} x {} tokens",
                short(&self.model, 48),
                self.data,
                self.windows,
                self.seq_len
            ),
            1,
            BLACK,
            Anchor::Middle,
        );
        let finite: Vec<&RunResult> = self
            .runs
            .iter()
            .filter(|r| r.ppl.is_finite() && r.ppl > 0.0)
            .collect();
        let max_mb = finite
            .iter()
            .map(|r| r.bytes as f64 / MB)
            .fold(1.0, f64::max);
        let (_, xmax, xt) = lin_ticks(0.0, max_mb * 1.05);
        let (pmin, pmax) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
            (a.min(r.ppl), b.max(r.ppl))
        });
        let (pmin, pmax) = if finite.is_empty() {
            (1.0, 10.0)
        } else {
            (pmin, pmax)
        };
        let log = pmax / pmin > 3.0;
        let (ylo, yhi, ticks) = if log {
            log_ticks(pmin, pmax)
        } else {
            lin_ticks(pmin, pmax)
        };
        let fy = |p: f64| -> f64 {
            let t = if log {
                (p.ln() - ylo.ln()) / (yhi.ln() - ylo.ln())
            } else {
                (p - ylo) / (yhi - ylo)
            };
            y0 + t * (y1 - y0)
        };
        let fx = |mb: f64| x0 + mb / xmax * (x1 - x0);
        // Axes, grid and ticks.
        for &t in &ticks {
            let y = fy(t);
            sc.line(x0, y, x1, y, GRID, 1.0);
            sc.text(x0 - 8.0, y + 4.0, &fmt_tick(t), 1, BLACK, Anchor::End);
        }
        for &t in &xt {
            let x = fx(t);
            sc.line(x, y0, x, y1, GRID, 1.0);
            sc.text(x, y0 + 18.0, &fmt_tick(t), 1, BLACK, Anchor::Middle);
        }
        sc.line(x0, y0, x1, y0, BLACK, 2.0);
        sc.line(x0, y0, x0, y1, BLACK, 2.0);
        sc.text(
            (x0 + x1) / 2.0,
            h - 22.0,
            "model size (MB, tensor bytes)",
            1,
            BLACK,
            Anchor::Middle,
        );
        sc.text(
            x0,
            y1 - 12.0,
            if log {
                "perplexity (log scale)"
            } else {
                "perplexity"
            },
            1,
            BLACK,
            Anchor::Start,
        );
        // Points and legend.
        // One colour per method (the label's first word), in order of appearance.
        let mut families: Vec<&str> = Vec::new();
        for (i, r) in finite.iter().enumerate() {
            let (x, y) = (fx(r.bytes as f64 / MB), fy(r.ppl));
            // A composed recipe (`a + b`) is its own family.
            let family = if r.label.contains(" + ") {
                r.label.as_str()
            } else {
                r.label.split_whitespace().next().unwrap_or("")
            };
            let c = if r.dense {
                BLACK
            } else {
                let k = families
                    .iter()
                    .position(|f| *f == family)
                    .unwrap_or_else(|| {
                        families.push(family);
                        families.len() - 1
                    });
                PALETTE[k % PALETTE.len()]
            };
            let ly = top + 10.0 + 22.0 * i as f64;
            let lx = w - right + 20.0;
            if r.dense {
                sc.rect(x - 6.0, y - 6.0, 12.0, 12.0, c);
                sc.rect(lx - 5.0, ly - 5.0, 10.0, 10.0, c);
            } else {
                sc.circle(x, y, 6.0, c);
                sc.circle(lx, ly, 5.0, c);
            }
            sc.text(
                lx + 12.0,
                ly + 4.0,
                &format!(
                    "{} ({:.2}, {:.0} MB)",
                    short(&r.label, 26),
                    r.ppl,
                    r.bytes as f64 / MB
                ),
                1,
                BLACK,
                Anchor::Start,
            );
        }
        sc
    }
}

fn short(s: &str, n: usize) -> String {
    let s = s.rsplit('/').next().unwrap_or(s);
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}

fn fmt_tick(t: f64) -> String {
    if t >= 100.0 || t.fract() == 0.0 {
        format!("{t:.0}")
    } else {
        format!("{t:.1}")
    }
}

/// The smallest of 1, 2, 5 × 10ᵏ at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let k = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * k)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * k)
}

/// Linear ticks (about 5, steps of 1, 2, 5 × 10ᵏ) covering `[lo, hi]`.
fn lin_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
    let step = nice_ceiling(span / 5.0);
    let a = (lo / step).floor() * step;
    let b = (hi / step).ceil() * step;
    let b = if b <= a { a + step } else { b };
    let n = ((b - a) / step).round() as usize;
    (a, b, (0..=n).map(|i| a + step * i as f64).collect())
}

/// Log-scale ticks at 1, 2, 5 × 10ᵏ covering `[lo, hi]`.
fn log_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let mut ticks = Vec::new();
    let mut k = 10f64.powf(lo.log10().floor());
    let mut a = None;
    while ticks.last().is_none_or(|&t: &f64| t < hi) && ticks.len() < 40 {
        for m in [1.0, 2.0, 5.0] {
            let t = m * k;
            if t <= lo {
                a = Some(t);
            } else if ticks.last().is_none_or(|&l: &f64| l < hi) {
                ticks.push(t);
            }
        }
        k *= 10.0;
    }
    let a = a.unwrap_or(lo);
    ticks.insert(0, a);
    let b = *ticks.last().unwrap_or(&hi);
    (a, b, ticks)
}

type Rgb = [u8; 3];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

#[derive(Clone, Copy, Debug)]
enum Anchor {
    Start,
    Middle,
    End,
}

#[derive(Clone, Debug)]
enum Shape {
    Line {
        a: (f64, f64),
        b: (f64, f64),
        c: Rgb,
        width: f64,
    },
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        c: Rgb,
    },
    Circle {
        x: f64,
        y: f64,
        r: f64,
        c: Rgb,
    },
    /// `scale` 1 = 8-pixel glyphs; the baseline is at `y`.
    Text {
        x: f64,
        y: f64,
        s: String,
        scale: u32,
        c: Rgb,
        anchor: Anchor,
    },
}

/// A list of shapes on a white canvas, rendered to SVG or to pixels.
struct Scene {
    w: f64,
    h: f64,
    shapes: Vec<Shape>,
}

const GLYPH: f64 = 8.0;

impl Scene {
    fn new(w: f64, h: f64) -> Self {
        Self {
            w,
            h,
            shapes: Vec::new(),
        }
    }
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, c: Rgb, width: f64) {
        self.shapes.push(Shape::Line {
            a: (x1, y1),
            b: (x2, y2),
            c,
            width,
        });
    }
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: Rgb) {
        self.shapes.push(Shape::Rect { x, y, w, h, c });
    }
    fn circle(&mut self, x: f64, y: f64, r: f64, c: Rgb) {
        self.shapes.push(Shape::Circle { x, y, r, c });
    }
    fn text(&mut self, x: f64, y: f64, s: &str, scale: u32, c: Rgb, anchor: Anchor) {
        self.shapes.push(Shape::Text {
            x,
            y,
            s: s.to_string(),
            scale,
            c,
            anchor,
        });
    }

    fn to_svg(&self) -> String {
        let col = |c: Rgb| format!("rgb({},{},{})", c[0], c[1], c[2]);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
            w = self.w,
            h = self.h
        );
        for sh in &self.shapes {
            match sh {
                Shape::Line { a, b, c, width } => s.push_str(&format!(
                    "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"{width}\"/>\n",
                    a.0, a.1, b.0, b.1, col(*c)
                )),
                Shape::Rect { x, y, w, h, c } => s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>\n",
                    col(*c)
                )),
                Shape::Circle { x, y, r, c } => s.push_str(&format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r:.1}\" fill=\"{}\"/>\n",
                    col(*c)
                )),
                Shape::Text {
                    x,
                    y,
                    s: t,
                    scale,
                    c,
                    anchor,
                } => {
                    let a = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    s.push_str(&format!(
                        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-family=\"monospace\" font-size=\"{}\" text-anchor=\"{a}\" fill=\"{}\">{}</text>\n",
                        12 * scale,
                        col(*c),
                        xml_escape(t)
                    ))
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }

    fn to_png(&self) -> Result<Vec<u8>, std::io::Error> {
        let (w, h) = (self.w as usize, self.h as usize);
        let mut px = Canvas {
            w,
            h,
            data: vec![255u8; 3 * w * h],
        };
        for sh in &self.shapes {
            match sh {
                Shape::Line { a, b, c, width } => px.line(*a, *b, *c, *width),
                Shape::Rect { x, y, w, h, c } => px.fill(*x, *y, *x + *w, *y + *h, *c),
                Shape::Circle { x, y, r, c } => px.disc(*x, *y, *r, *c),
                Shape::Text {
                    x,
                    y,
                    s,
                    scale,
                    c,
                    anchor,
                } => {
                    let width = s.chars().count() as f64 * GLYPH * *scale as f64;
                    let x = match anchor {
                        Anchor::Start => *x,
                        Anchor::Middle => x - width / 2.0,
                        Anchor::End => x - width,
                    };
                    px.text(x, y - GLYPH * *scale as f64, s, *scale as usize, *c);
                }
            }
        }
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut wr = enc.write_header().map_err(std::io::Error::other)?;
            wr.write_image_data(&px.data)
                .map_err(std::io::Error::other)?;
        }
        Ok(out)
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Canvas {
    w: usize,
    h: usize,
    data: Vec<u8>,
}

impl Canvas {
    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = 3 * (y as usize * self.w + x as usize);
            self.data[i..i + 3].copy_from_slice(&c);
        }
    }
    fn fill(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        for y in y0.round() as i64..y1.round() as i64 {
            for x in x0.round() as i64..x1.round() as i64 {
                self.put(x, y, c);
            }
        }
    }
    fn disc(&mut self, cx: f64, cy: f64, r: f64, c: Rgb) {
        let (x0, x1) = ((cx - r).floor() as i64, (cx + r).ceil() as i64);
        let (y0, y1) = ((cy - r).floor() as i64, (cy + r).ceil() as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.put(x, y, c);
                }
            }
        }
    }
    fn line(&mut self, a: (f64, f64), b: (f64, f64), c: Rgb, width: f64) {
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
        let half = (width / 2.0).max(0.5);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            self.fill(x - half, y - half, x + half, y + half, c);
        }
    }
    fn text(&mut self, x: f64, top: f64, s: &str, scale: usize, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or([0; 8]);
            let gx = x + (i * 8 * scale) as f64;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let px = gx + (col * scale) as f64;
                        let py = top + (row * scale) as f64;
                        self.fill(px, py, px + scale as f64, py + scale as f64, c);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let run = |label: &str, mb: f64, ppl: f64, dense: bool| RunResult {
            label: label.into(),
            path: format!("/x/{label}"),
            bytes: (mb * MB) as u64,
            linear_params: 1000,
            ppl,
            tokens_per_s: 700.0,
            compress_s: None,
            dense,
        };
        Report {
            model: "m.gguf".into(),
            data: "wikitext2".into(),
            windows: 20,
            seq_len: 2048,
            runs: vec![
                run("dense", 538.0, 20.97, true),
                run("svd-llm 0.2", 431.0, 59.02, false),
                run("lsaq 150MB", 150.0, 22.4, false),
            ],
        }
    }

    #[test]
    fn markdown_has_one_row_per_run_with_ratios_to_dense() {
        let md = report().to_markdown();
        assert_eq!(md.lines().filter(|l| l.starts_with("| ")).count(), 4);
        let row = md
            .lines()
            .find(|l| l.starts_with("| svd-llm 0.2 "))
            .unwrap();
        assert!(
            row.starts_with("| svd-llm 0.2 | 431.0 | 0.801 | 1000 | 59.02 | 2.81"),
            "{row}"
        );
        assert!(md.contains("| dense | 538.0 | 1 |"));
    }

    #[test]
    fn svg_and_png_show_the_same_points() {
        let r = report();
        let sc = r.scene();
        let svg = r.plot_svg();
        let discs: Vec<(f64, f64)> = sc
            .shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Circle { x, y, r, .. } if *r == 6.0 => Some((*x, *y)),
                _ => None,
            })
            .collect();
        assert_eq!(discs.len(), 2);
        // Smaller file with lower perplexity lies left of and below the other point.
        assert!(discs[1].0 < discs[0].0 && discs[1].1 > discs[0].1);
        for (x, y) in &discs {
            assert!(svg.contains(&format!("cx=\"{x:.1}\" cy=\"{y:.1}\"")));
        }
        let png = r.plot_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // Decode and check the pixel at each disc centre has the disc's colour.
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut rd = dec.read_info().unwrap();
        let mut buf = vec![0; rd.output_buffer_size().unwrap()];
        let info = rd.next_frame(&mut buf).unwrap();
        let at = |x: f64, y: f64| {
            let i = 3 * (y as usize * info.width as usize + x as usize);
            [buf[i], buf[i + 1], buf[i + 2]]
        };
        assert_eq!(at(discs[0].0, discs[0].1), PALETTE[0]);
        assert_eq!(at(discs[1].0, discs[1].1), PALETTE[1]);
    }

    #[test]
    fn ticks_cover_the_range() {
        let (a, b, t) = log_ticks(20.97, 171.8);
        assert!(a <= 20.97 && b >= 171.8, "{a} {b} {t:?}");
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        let (a, b, t) = lin_ticks(0.0, 600.0);
        assert!(a == 0.0 && b >= 600.0 && t.len() <= 8, "{t:?}");
    }
}
