using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Xunit.Abstractions;

namespace Verifier.Checker.Tests;

/// <summary>Hostile review of T3 (proofs/T3-normalised-tables.md): the law "accepted ⇒ b₀ ≥ true loss" over random
/// models T3 covers with awkward parameters (tiny eps, large, negative or zero normalisation gains, large biases, wide
/// weights), and over whole forged transcripts: the advice, the gates and the centres chosen by a forger, and every
/// claim then set to the least value the checker itself certifies (its own verdicts used as an oracle), so b₀ is the
/// lowest any transcript with that advice can reach.</summary>
public class NormTablesForgerTests(ITestOutputHelper output)
{
    static ModelConfig Cfg(int layers, bool attnOnly, NormKind norm, ActKind act, bool finalRms, double eps, int dModel = 6) =>
        ModelConfig.Create(dModel, 2, 3, 8, layers, 4, 5, 5, attnOnly) with { Normalization = norm, Act = act, FinalRms = finalRms, Eps = eps };

    static readonly NormKind[] Norms = [NormKind.LN, NormKind.LNPre, NormKind.RMS, NormKind.RMSPre];
    static readonly ActKind[] Acts = [ActKind.Relu, ActKind.Gelu, ActKind.GeluNew, ActKind.GeluFast, ActKind.GeluPytorchTanh, ActKind.Silu];
    static readonly double[] Epss = [1e-12, 1e-8, 1e-5, 0.1, 3.0];

    static (string Path, BoundResult Result) Tables(ArchWorld w)
    {
        string path = Path.Combine(w.Dir, "tables.json");
        var r = BoundProgram.Run(Strategies.CrosscoderTables, new BoundInputs(w.Model, w.Dir, w.Data, w.DataPath, CrosscoderWeights.Load(w.CcDir), w.CcDir),
            path, computeTrueLoss: true, overwrite: true);
        return (path, r);
    }

    static Verdict Check(ArchWorld w, JsonObject t)
    {
        string path = Path.Combine(w.Dir, "forged.json");
        File.WriteAllText(path, t.ToJsonString());
        return TranscriptChecker.Check(path, w.Dir, w.CcDir, w.DataPath);
    }

    static double TrueMean(ArchWorld w)
    {
        double s = 0;
        for (int q = 0; q < w.Data.Count; q++) s += w.TrueLoss(q);
        return s / w.Data.LabelledPositions;
    }

    /// <summary>Edits the weights of a random model: gains scaled (some negative, some zero), biases of the norms
    /// enlarged, according to <paramref name="r"/>.</summary>
    static Action<ModelWeights> Awkward(Rng r, double gainScale, double biasScale, bool zeros, bool negatives)
    {
        return m =>
        {
            foreach (var name in m.Config.ParameterShapes().Select(s => s.Name))
            {
                var data = m[name].Data;
                if (name.EndsWith(".w", StringComparison.Ordinal))
                    for (int i = 0; i < data.Length; i++)
                    {
                        data[i] *= gainScale;
                        if (zeros && r.NextInt(3) == 0) data[i] = 0;
                        if (negatives && r.NextInt(2) == 0) data[i] = -data[i];
                    }
                else if (name.Contains("ln") && name.EndsWith(".b", StringComparison.Ordinal))
                    for (int i = 0; i < data.Length; i++) data[i] *= biasScale;
            }
        };
    }

    /// <summary>A crosscoder whose decoder is the identity at every site plus <paramref name="noise"/>, or random.</summary>
    internal static void SaveCrosscoder(ArchWorld w, Rng r, int kind, double noise)
    {
        if (kind == 0) { w.SaveCrosscoder((ulong)r.NextInt(1 << 30)); return; }
        var sites = w.C.SiteNames(); int S = sites.Count, d = w.C.DModel, n = 2 * S * d;
        var enc = new double[S * d * n]; var dec = new double[n * S * d];
        for (int j = 0; j < S * d; j++) { enc[j * n + j] = 1; enc[j * n + S * d + j] = -1; dec[j * S * d + j] = 1; dec[(S * d + j) * S * d + j] = -1; }
        for (int i = 0; i < dec.Length; i++) dec[i] += noise * (r.NextDouble() - 0.5);
        var bdec = Enumerable.Range(0, S * d).Select(_ => kind == 2 ? 50 * (r.NextDouble() - 0.5) : 0.0).ToArray();
        var cfg = new CrosscoderConfig(n, d, sites, CrosscoderModes.ReluL1, null, 1.0, Enumerable.Repeat(1.0, S).ToArray(),
            Hashing.Sha256File(Path.Combine(w.Dir, ModelWeights.WeightsFileName)), null, 0);
        Directory.CreateDirectory(w.CcDir);
        new CrosscoderWeights(cfg, new Dictionary<string, NamedTensor>
        {
            ["W_enc"] = new("W_enc", [S, d, n], enc, "F64"), ["W_dec"] = new("W_dec", [n, S, d], dec, "F64"),
            ["b_enc"] = new("b_enc", [n], new double[n], "F64"), ["b_dec"] = new("b_dec", [S, d], bdec, "F64"),
        }).SaveInto(w.CcDir);
    }

    static readonly Regex Position = new(@"position (\d+)", RegexOptions.Compiled);

    /// <summary>Every ε, loss_sum and b₀ claim set to 0 and then, step by step, raised to exactly what the checker
    /// certifies (its rejection names the value): the least b₀ any transcript with this advice, these gates and these
    /// centres can claim. Null (with the reason) if the transcript is refused for anything other than a low claim.</summary>
    internal static double? Minimal(ArchWorld w, JsonObject t, out string reason)
    {
        var steps = t["steps"]!.AsArray();
        foreach (var s in steps)
        {
            var claim = s!["claim"]!.AsObject();
            claim.Remove("errors");
            if (claim.ContainsKey("eps") && s["lemma"]!.GetValue<string>() is "L2" or "T1" or "T2")
                claim["eps"] = new JsonArray(claim["eps"]!.AsArray().Select(_ => (JsonNode)0.0).ToArray());
            if (claim.ContainsKey("loss_sum")) claim["loss_sum"] = 0.0;
            if (claim.ContainsKey("b0")) claim["b0"] = 0.0;
        }
        t["result"]!["b0"] = 0.0;
        t["result"]!.AsObject().Remove("true_loss");
        for (int iter = 0; iter < 5000; iter++)
        {
            var v = Check(w, t);
            if (v.Accepted) { reason = ""; return v.B0; }
            if (v.Certified is not { } c || !v.Reason.Contains("is below the certified") || v.Step is not { } id) { reason = v.Reason; return null; }
            var claim = steps[id]!["claim"]!.AsObject();
            switch (v.Lemma)
            {
                case "L2" or "T1" or "T2": claim["eps"]![int.Parse(Position.Match(v.Reason).Groups[1].Value)] = c; break;
                case "L1": claim["loss_sum"] = c; break;
                case "MEAN": claim["b0"] = c; t["result"]!["b0"] = c; break;
                default: reason = v.Reason; return null;
            }
        }
        reason = "no fixed point";
        return null;
    }

    /// <summary>Random covered models with awkward parameters: the bound program's transcript, if accepted, bounds the
    /// true loss; and the least b₀ the checker lets a transcript with the same advice claim does too.</summary>
    [Fact]
    public void Accepted_implies_b0_at_least_the_true_loss_on_awkward_covered_models()
    {
        var r = new Rng(ulong.Parse(Environment.GetEnvironmentVariable("FORGER_SEED") ?? "20261127"));
        int accepted = 0, cases = 0;
        for (int k = 0; k < int.Parse(Environment.GetEnvironmentVariable("FORGER_CASES") ?? "12"); k++)
        {
            var norm = Norms[r.NextInt(Norms.Length)];
            var act = Acts[r.NextInt(Acts.Length)];
            bool attnOnly = r.NextInt(5) == 0;
            var cfg = Cfg(1 + r.NextInt(2), attnOnly, norm, act, r.NextInt(3) == 0, Epss[r.NextInt(Epss.Length)]);
            // T3's attention options: local windows (GPT-Neo), no scale, another scale, the inverse-layer factor
            cfg = r.NextInt(4) switch
            {
                1 => cfg with { AttnTypes = string.Join(",", Enumerable.Range(0, cfg.NLayers).Select(i => i % 2 == 0 ? "local" : "global")), WindowSize = 1 + r.NextInt(3) },
                2 => cfg with { UseAttnScale = false },
                3 => cfg with { AttnScale = 0.25 + 4 * r.NextDouble(), ScaleAttnByInverseLayerIdx = r.NextInt(2) == 0 },
                _ => cfg,
            };
            double std = new[] { 0.05, 0.3, 1.0, 2.0 }[r.NextInt(4)];
            double gain = new[] { 1.0, 10.0, 100.0, 0.01 }[r.NextInt(4)];
            double bias = new[] { 1.0, 30.0 }[r.NextInt(2)];
            using var w = new ArchWorld(cfg.Validated(), seed: (ulong)(1000 + k), sequences: 2, std: std, edit: Awkward(r, gain, bias, r.NextInt(3) == 0, r.NextInt(3) == 0));
            int cc = r.NextInt(3);
            SaveCrosscoder(w, r, cc, new[] { 0.0, 1e-3, 0.3 }[r.NextInt(3)]);
            string path;
            try { path = Tables(w).Path; }
            catch (NumericException e) { output.WriteLine($"case {k}: the bound program refuses: {e.Message}"); continue; }
            var v = TranscriptChecker.Check(path, w.Dir, w.CcDir, w.DataPath);
            double truth = TrueMean(w);
            string what = $"case {k}: {norm} {act} attnOnly {attnOnly} layers {cfg.NLayers} eps {cfg.Eps} [{string.Join(", ", cfg.Features())}] std {std} gain {gain} bias {bias} cc {cc}";
            cases++;
            if (v.Accepted)
            {
                accepted++;
                Assert.True(v.B0 >= truth, $"{what}: accepted b0 {v.B0:R} < true loss {truth:R}");
                var t = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
                double? min = Minimal(w, t, out string why);
                Assert.True(min is not null, $"{what}: {why}");
                // the same without the trivial IP cap in L1: T3's own bound alone
                foreach (var s in t["steps"]!.AsArray())
                    if (s!["lemma"]!.GetValue<string>() == "L1") { var ins = s["inputs"]!.AsArray(); while (ins.Count > 4) ins.RemoveAt(ins.Count - 1); }
                double? own = Minimal(w, t, out why);
                Assert.True(own is not null, $"{what} (no IP): {why}");
                output.WriteLine($"{what}: true {truth:R} b0 {v.B0:R} least {min:R} gap {min - truth:R} T3 alone {own:R} gap {own - truth:R}");
                Assert.True(min >= truth, $"{what}: least accepted b0 {min:R} < true loss {truth:R}");
                Assert.True(own >= truth, $"{what}: least accepted b0 without IP {own:R} < true loss {truth:R}");
            }
            else output.WriteLine($"{what}: refused: {v.Reason}");
        }
        Assert.True(accepted >= cases / 2, $"only {accepted} of {cases} accepted");
    }
}

public class NormTablesForgedAdviceTests(ITestOutputHelper output)
{
    static ModelConfig Cfg(NormKind norm, ActKind act, bool finalRms, double eps, bool attnOnly = false, int layers = 1) =>
        ModelConfig.Create(6, 2, 3, 8, layers, 4, 5, 5, attnOnly) with { Normalization = norm, Act = act, FinalRms = finalRms, Eps = eps };

    public static IEnumerable<object[]> Cases() =>
    [
        [NormKind.LN, ActKind.GeluNew, false, 1e-5, 0.05],
        [NormKind.LN, ActKind.Relu, false, 1e-12, 0.05],
        [NormKind.RMS, ActKind.Silu, false, 1e-8, 0.1],
        [NormKind.LNPre, ActKind.Gelu, true, 1e-5, 0.05],
        [NormKind.LN, ActKind.GeluPytorchTanh, true, 1e-12, 0.3],
    ];

    /// <summary>With an exact crosscoder (tight bounds) and the trivial IP cap removed from L1, forged advice (features
    /// scaled, shifted, zeroed, negated, noised), forged gates and forged centres, every claim then set to the least the
    /// checker certifies: never below the true loss.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Forged_advice_gates_and_centres_never_certify_below_the_true_loss(NormKind norm, ActKind act, bool finalRms, double eps, double std)
    {
        using var w = new ArchWorld(Cfg(norm, act, finalRms, eps).Validated(), seed: 97, sequences: 2, std: std,
            edit: m => { foreach (var (name, _) in m.Config.ParameterShapes()) if (name.EndsWith(".w", StringComparison.Ordinal)) { var x = m[name].Data; x[0] = -3 * x[0]; x[1] = 0; } });
        NormTablesForgerTests.SaveCrosscoder(w, new Rng(1), 1, 0.0);
        string path = Path.Combine(w.Dir, "tables.json");
        BoundProgram.Run(Strategies.CrosscoderTables, new BoundInputs(w.Model, w.Dir, w.Data, w.DataPath, CrosscoderWeights.Load(w.CcDir), w.CcDir), path, computeTrueLoss: true, overwrite: true);
        var original = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        double truth = 0;
        for (int q = 0; q < w.Data.Count; q++) truth += w.TrueLoss(q);
        truth /= w.Data.LabelledPositions;
        var r = new Rng(7);
        int done = 0;
        for (int k = 0; k < 11; k++)
        {
            var t = original.DeepClone().AsObject();
            foreach (var s in t["steps"]!.AsArray())
            {
                string lemma = s!["lemma"]!.GetValue<string>();
                if (lemma == "L1") { var ins = s["inputs"]!.AsArray(); while (ins.Count > 4) ins.RemoveAt(ins.Count - 1); }
                if (lemma == "L2" && k >= 9)
                {
                    // a' = c·1 at every site (the identity crosscoder: feature i < S·d decodes +1, the others −1), so
                    // Pa' = 0 for LN and LNPre: ι = 1/√eps and ρ = 0, NL's cap is all that holds.
                    int half = w.C.SiteNames().Count * w.C.DModel;
                    double c = k == 9 ? 0.3 : 0.0;
                    foreach (var tok in s["data"]!["features"]!.AsArray())
                        foreach (var p in tok!.AsArray()) p![1] = p[0]!.GetValue<int>() < half ? c : -c;
                }
                else if (lemma == "L2" && k > 0)
                    foreach (var tok in s["data"]!["features"]!.AsArray())
                    {
                        double a = new[] { 1.0, 0.999, 1.001, 0.0, -1.0, 1.5, 1e3, 1e-3 }[(k + r.NextInt(2)) % 8];
                        foreach (var p in tok!.AsArray())
                        {
                            double v = p![1]!.GetValue<double>() * a;
                            if (k % 3 == 0) v += 0.01 * (r.NextDouble() - 0.5);
                            p[1] = v;
                        }
                    }
                if (lemma == "T1" && s["inputs"]!.AsArray().Count == 0 && k % 4 == 1)
                    foreach (var g in s["data"]!["gates"]!.AsArray())
                    {
                        var ga = g!.AsArray();
                        for (int i = 0; i < ga.Count; i++) ga[i] = r.NextInt(2);
                    }
                if (lemma == "T1" && s["inputs"]!.AsArray().Count > 0 && k % 4 == 2)
                    foreach (var h in s["data"]!["centres"]!.AsArray())
                        foreach (var c in h!.AsArray())
                        {
                            var ca = c!.AsArray();
                            for (int i = 0; i < ca.Count; i++) ca[i] = k % 8 == 2 ? 0.0 : 5 * (r.NextDouble() - 0.5);
                        }
            }
            double? min = NormTablesForgerTests.Minimal(w, t, out string why);
            output.WriteLine($"forgery {k}: true {truth:R} least b0 {min:R} {why}");
            if (min is null) continue;
            done++;
            Assert.True(min >= truth, $"forgery {k}: least accepted b0 {min:R} < true loss {truth:R}");
        }
        Assert.True(done >= 5, $"only {done} forgeries reached acceptance");
    }
}

public class NormTablesDegenerateTests(ITestOutputHelper output)
{
    /// <summary>Normalisation inputs near the singularity: every embedding row a constant plus noise of size
    /// <paramref name="spread"/> (so ‖Pa'‖ is tiny for LN and LNPre), eps 1e-12, and a crosscoder that is the identity
    /// plus decoder noise <paramref name="noise"/> (so ε is comparable to ρ and NL's first term and its cap both act).
    /// The IP cap is removed from L1 and every claim set to the least the checker certifies; forged advice scaled
    /// towards a' = 0 as well: never below the true loss.</summary>
    [Theory]
    [InlineData(NormKind.LN, ActKind.GeluNew, false, 1e-6, 1e-7)]
    [InlineData(NormKind.LNPre, ActKind.Silu, false, 1e-5, 1e-8)]
    [InlineData(NormKind.RMSPre, ActKind.GeluFast, true, 1e-6, 0)]
    [InlineData(NormKind.LN, ActKind.Relu, false, 1e-4, 0)]
    public void Near_singular_normalisation_inputs_never_certify_below_the_true_loss(NormKind norm, ActKind act, bool finalRms, double spread, double noise)
    {
        foreach (bool attnOnly in new[] { true, false })
        {
            var cfg = (ModelConfig.Create(6, 2, 3, 8, 1, 4, 5, 5, attnOnly) with { Normalization = norm, Act = act, FinalRms = finalRms, Eps = 1e-12 }).Validated();
            var r = new Rng(11);
            using var w = new ArchWorld(cfg, seed: 5, sequences: 2, std: 0.3, edit: m =>
            {
                var we = m["embed.W_E"].Data; var wp = m["pos_embed.W_pos"].Data;
                bool rms = norm is NormKind.RMS or NormKind.RMSPre;
                for (int i = 0; i < we.Length; i++) we[i] = (rms ? 0 : 0.7) + spread * (r.NextDouble() - 0.5);
                for (int i = 0; i < wp.Length; i++) wp[i] = (rms ? 0 : 0.2) + spread * (r.NextDouble() - 0.5);
            });
            NormTablesForgerTests.SaveCrosscoder(w, r, 1, noise);
            string path = Path.Combine(w.Dir, "tables.json");
            BoundProgram.Run(Strategies.CrosscoderTables, new BoundInputs(w.Model, w.Dir, w.Data, w.DataPath, CrosscoderWeights.Load(w.CcDir), w.CcDir), path, computeTrueLoss: true, overwrite: true);
            var v0 = TranscriptChecker.Check(path, w.Dir, w.CcDir, w.DataPath);
            double truth = 0;
            for (int q = 0; q < w.Data.Count; q++) truth += w.TrueLoss(q);
            truth /= w.Data.LabelledPositions;
            Assert.True(!v0.Accepted || v0.B0 >= truth, $"generator: b0 {v0.B0:R} < {truth:R}");
            var original = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            foreach (double scale in new[] { 1.0, 1e-3, 0.0, 1.0 + 1e-9 })
            {
                var t = original.DeepClone().AsObject();
                foreach (var s in t["steps"]!.AsArray())
                {
                    string lemma = s!["lemma"]!.GetValue<string>();
                    if (lemma == "L1") { var ins = s["inputs"]!.AsArray(); while (ins.Count > 4) ins.RemoveAt(ins.Count - 1); }
                    if (lemma == "L2")
                        foreach (var tok in s["data"]!["features"]!.AsArray())
                            foreach (var p in tok!.AsArray()) p![1] = p[1]!.GetValue<double>() * scale;
                }
                double? min = NormTablesForgerTests.Minimal(w, t, out string why);
                output.WriteLine($"{norm} {act} attnOnly {attnOnly} scale {scale}: generator {v0.Accepted} b0 {v0.B0:R}; true {truth:R} least {min:R} {why}");
                Assert.True(min is null || min >= truth, $"{norm} {act} attnOnly {attnOnly} scale {scale}: least accepted b0 {min:R} < true loss {truth:R}");
            }
        }
    }
}
