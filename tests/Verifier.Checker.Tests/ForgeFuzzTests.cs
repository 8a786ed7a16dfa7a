using Verifier.Checker;
using Verifier.Core;
using Xunit.Abstractions;

namespace Verifier.Checker.Tests;

/// <summary>FORGE fuzzer: random small models of every family with random extreme scales and edits; for one random
/// sequence, the checker's certified values (BF: ArchForward.SequenceInterval; IP: the all-token box per position; CL: the
/// sequence's own point box with scores) against ReferenceForward's float64 loss and misclassification count, the proxy
/// of the exact real loss the lemmas bound, within the float64 reference's own rounding (which only matters for logits far
/// above 2²⁰; at 2⁴⁰–2⁵² the float64 loss can be 0.3 above the real one, and float ties flip argmaxes).
/// VERIFIER_FORGE_N sets the number of models (default 1000).</summary>
public class ForgeFuzzTests(ITestOutputHelper output)
{
    static readonly string[] Edits = ["none", "tiny-eps", "huge-eps", "big-tensor", "tiny-tensor", "near-equal-embed", "huge-ln-w", "big-logit-offset", "long-rotary", "overflow-embed", "overflow-weights"];

    static int Argmax(double[,] z, int t, int V) { int a = 0; for (int v = 1; v < V; v++) if (z[t, v] > z[t, a]) a = v; return a; }

    /// <summary>A random combination of every option ModelConfig accepts.</summary>
    static ModelConfig RandomConfig(Rng r)
    {
        int H = 1 + r.NextInt(4), dh = 2 * (1 + r.NextInt(3)), L = 1 + r.NextInt(2);
        bool attnOnly = r.NextInt(4) == 0;
        int[] kvChoices = Enumerable.Range(1, H).Where(k => H % k == 0).ToArray();
        var c = ModelConfig.Create(1 + r.NextInt(8), H, dh, 1 + r.NextInt(10), L, 1 + r.NextInt(6), 1 + r.NextInt(6), 1 + r.NextInt(6), attnOnly);
        bool rotary = r.NextInt(2) == 0;
        return c with
        {
            Normalization = (NormKind)r.NextInt(5), FinalRms = r.NextInt(2) == 0, Eps = new[] { 1e-5, 1e-12, 0.5, 5e-324, 1e300 }[r.NextInt(5)],
            Act = (ActKind)r.NextInt(6), GatedMlp = !attnOnly && r.NextInt(2) == 0, ParallelAttnMlp = !attnOnly && r.NextInt(2) == 0,
            UseAttnScale = r.NextInt(4) != 0, AttnScale = r.NextInt(3) == 0 ? new[] { 0.5, 3.0, 1e-3, 1e3, 1e-300, 1e300 }[r.NextInt(6)] : null,
            ScaleAttnByInverseLayerIdx = r.NextInt(3) == 0,
            Rotary = rotary, RotaryDim = rotary ? 2 * (1 + r.NextInt(dh / 2)) : 0, RotaryBase = new[] { 10000, 2.0, 1e6, 1e-300, 1e300 }[r.NextInt(5)],
            RotaryAdjacentPairs = rotary && r.NextInt(2) == 0,
            NKeyValueHeads = r.NextInt(2) == 0 ? null : kvChoices[r.NextInt(kvChoices.Length)],
            AttnTypes = r.NextInt(2) == 0 ? null : string.Join(",", Enumerable.Range(0, L).Select(_ => r.NextInt(2) == 0 ? "local" : "global")),
            WindowSize = 1 + r.NextInt(4),
        };
    }

    [Fact]
    public void Forge_fuzz_certified_values_are_never_below_ReferenceForward()
    {
        int n = int.TryParse(Environment.GetEnvironmentVariable("VERIFIER_FORGE_N"), out var k) ? k : 1000;
        var fams = ArchCheckerTests.FamilyTable();
        var stats = new Dictionary<string, int[]>();   // edit → [models, bf-viol, ip-viol, cl-viol, err-viol, refused, ref-overflow]
        var failures = new List<string>();
        var famCount = new Dictionary<string, int>();
        var r = new Rng(20261127);
        for (int it = 0; it < n; it++)
        {
            var (fname, baseCfg) = r.NextInt(2) == 0 ? fams[r.NextInt(fams.Count)] : ("random-config", RandomConfig(r));
            string edit = Edits[r.NextInt(Edits.Length)];
            if (r.NextInt(2) == 0) { string e2 = Edits[r.NextInt(Edits.Length)]; if (e2 != edit && e2 != "none" && edit != "none") edit = string.CompareOrdinal(edit, e2) < 0 ? edit + "+" + e2 : e2 + "+" + edit; }
            double std = new[] { 1e-3, 0.2, 2, 20 }[r.NextInt(4)];
            var cfg = baseCfg;
            if (edit.Contains("tiny-eps") && cfg.Normalization != NormKind.None) cfg = cfg with { Eps = 1e-300 };
            if (edit.Contains("huge-eps") && cfg.Normalization != NormKind.None) cfg = cfg with { Eps = 1e6 };
            if (edit.Contains("long-rotary") && cfg.Rotary) cfg = cfg with { RotaryBase = 1.5, NCtx = 8 };
            if (cfg.AttnScale is not null && !cfg.UseAttnScale) cfg = cfg with { AttnScale = null };
            if (r.NextInt(3) == 0) cfg = cfg with { DVocabOut = 2 + r.NextInt(4) };
            cfg = cfg.Validated();
            var w = ModelWeights.Random(cfg, (ulong)it * 7919 + 3, std);
            int offExp = 0;
            var names = w.Tensors.Keys.OrderBy(s => s, StringComparer.Ordinal).ToArray();
            foreach (var ed in edit.Split('+'))
            switch (ed)
            {
                case "big-tensor": { var t = w[names[r.NextInt(names.Length)]].Data; for (int i = 0; i < t.Length; i++) t[i] *= 1e6; break; }
                case "tiny-tensor": { var t = w[names[r.NextInt(names.Length)]].Data; for (int i = 0; i < t.Length; i++) t[i] *= 1e-9; break; }
                case "near-equal-embed": { var t = w["embed.W_E"].Data; for (int i = 0; i < t.Length; i++) t[i] = 1 + (r.NextInt(3) - 1) * Math.Pow(2, -52); break; }
                case "huge-ln-w": foreach (var nm in names.Where(s => s.EndsWith(".w"))) { var t = w[nm].Data; for (int i = 0; i < t.Length; i++) t[i] *= 1e8; } break;
                case "overflow-embed": { var t = w["embed.W_E"].Data; double f = Math.Pow(10, 100 + r.NextInt(208)); for (int i = 0; i < t.Length; i++) t[i] *= f; break; }
                case "overflow-weights": { var t = w[names[r.NextInt(names.Length)]].Data; double f = Math.Pow(10, 100 + r.NextInt(208)); for (int i = 0; i < t.Length; i++) t[i] *= f; break; }
                case "big-logit-offset": { var t = w["unembed.b_U"].Data; offExp = 10 + r.NextInt(45); double off = Math.Pow(2, offExp); for (int i = 0; i < t.Length; i++) t[i] += off; break; }
            }
            famCount[fname] = famCount.GetValueOrDefault(fname) + 1;
            if (!stats.TryGetValue(edit, out var st)) stats[edit] = st = new int[7];
            st[0]++;
            int T = 1 + r.NextInt(cfg.NCtx);
            var tokens = Enumerable.Range(0, T).Select(_ => r.NextInt(cfg.DVocab)).ToArray();
            var labels = Enumerable.Range(0, T).Select(t => t == T - 1 || r.NextInt(2) == 0 ? r.NextInt(cfg.DVocabOut) : -1).ToArray();
            var seq = new Sequence(tokens, labels);
            double[,] z;
            try { z = ReferenceForward.Run(w, tokens).Logits; } catch { st[6]++; continue; }
            var ce = new double[T]; double refSum = 0; int refWrong = 0; bool finite = true;
            for (int t = 0; t < T; t++)
            {
                if (labels[t] < 0) continue;
                ce[t] = ReferenceForward.CrossEntropy(z, t, labels[t]);
                if (!double.IsFinite(ce[t])) finite = false;
                refSum += ce[t];
                int arg = 0; for (int v = 1; v < cfg.DVocabOut; v++) if (z[t, v] > z[t, arg]) arg = v;
                if (arg != labels[t]) refWrong++;
            }
            if (!finite) { st[6]++; continue; }
            var arch = new ArchForward(w);
            string tag = $"#{it} {fname} {edit}{(offExp > 0 ? $" 2^{offExp}" : "")} std {std} eps {cfg.Eps:R} V {cfg.DVocabOut} T {T}";
            // The law is about the exact real loss (BOUNDS.md §1); ReferenceForward's float64 value is its proxy, off by its own
            // rounding: each logit by ≤ γ_{d+1}·(|b| + Σ|h||u|) ≤ (d + 2)·2⁻⁵²·zmax-ish, and CE's max + log(Σ) − z_y by a few ulps
            // of the largest logit. The tolerance covers that (it only matters for logits far above 2²⁰).
            double zmax = 0;
            for (int t = 0; t < T; t++) for (int v = 0; v < cfg.DVocabOut; v++) zmax = Math.Max(zmax, Math.Abs(z[t, v]));
            double slop = 4 * (cfg.DModel + 8) * Math.Pow(2, -52) * zmax;
            bool floatArgmaxReliable = slop < 1e-12;
            bool Below(double cert, double truth) => !(cert >= truth - 1e-9 * (1 + Math.Abs(truth)) - T * slop);
            try
            {
                var (sum, wrong) = arch.SequenceInterval(seq);
                if (Below(sum.Hi, refSum)) { st[1]++; failures.Add($"BF {tag}: certified {sum.Hi:R} < float {refSum:R}"); }
                if (floatArgmaxReliable && wrong < refWrong) { st[4]++; failures.Add($"BF errors {tag}: certified {wrong} < float {refWrong}"); }
            }
            catch (CheckFailure) { st[5]++; }
            try
            {
                // CL on the sequence's own point box, with scores
                var box = tokens.Select((x, t) => arch.Embed(x, t)).ToArray();
                var h = arch.Boxes(box, scores: true);
                for (int t = 0; t < T; t++)
                    if (labels[t] >= 0)
                    {
                        double c = Forward.CeFromDiffs(arch.LogitDiffsBox(h[t], labels[t])).Hi;
                        if (Below(c, ce[t])) { st[3]++; failures.Add($"CL {tag} t {t}: certified {c:R} < float {ce[t]:R}"); break; }
                        if (floatArgmaxReliable && Forward.Certain(arch.LogitDiffsBox(h[t], labels[t])) && Argmax(z, t, cfg.DVocabOut) != labels[t]) { st[4]++; failures.Add($"CLerr {tag} t {t}: certified correct, float argmax {Argmax(z, t, cfg.DVocabOut)} ≠ {labels[t]}"); break; }
                    }
            }
            catch (CheckFailure) { st[5]++; }
            try
            {
                int d = cfg.DModel; var we = w["embed.W_E"].Data; var wp = cfg.HasPosEmbed ? w["pos_embed.W_pos"].Data : null;
                var box = new R[T][];
                for (int u = 0; u < T; u++)
                {
                    box[u] = new R[d];
                    for (int i = 0; i < d; i++)
                    {
                        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                        for (int x = 0; x < cfg.DVocab; x++) { lo = Math.Min(lo, we[x * d + i]); hi = Math.Max(hi, we[x * d + i]); }
                        box[u][i] = wp is null ? new R(lo, hi) : new R(lo, hi) + R.Of(wp[u * d + i]);
                    }
                }
                var h = arch.Boxes(box, scores: false);
                for (int t = 0; t < T; t++)
                    if (labels[t] >= 0)
                    {
                        double c = Forward.CeFromDiffs(arch.LogitDiffsBox(h[t], labels[t])).Hi;
                        if (Below(c, ce[t])) { st[2]++; failures.Add($"IP {tag} t {t}: certified {c:R} < float {ce[t]:R}"); break; }
                        if (floatArgmaxReliable && Forward.Certain(arch.LogitDiffsBox(h[t], labels[t])) && Argmax(z, t, cfg.DVocabOut) != labels[t]) { st[4]++; failures.Add($"IPerr {tag} t {t}: certified correct, float argmax ≠ label"); break; }
                    }
            }
            catch (CheckFailure) { st[5]++; }
        }
        output.WriteLine("families: " + string.Join(", ", famCount.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")));
        output.WriteLine("edit: models, BF-viol, IP-viol, CL-viol, errors-viol, checker-refused, reference-overflow");
        foreach (var (e, s) in stats.OrderBy(p => p.Key)) output.WriteLine($"{e}: {string.Join(", ", s)}");
        foreach (var g in failures.GroupBy(f => f.Split(' ')[0])) foreach (var f in g.Take(Environment.GetEnvironmentVariable("VERIFIER_FORGE_ALL") is null ? 8 : int.MaxValue)) output.WriteLine(f);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }
}
