using System.Text.Json.Nodes;
using FsCheck.Xunit;
using Verifier.Checker;
using Verifier.Core;
using Xunit.Abstractions;

namespace Verifier.Checker.Tests;

/// <summary>A non-basic model, its dataset on disk, and transcripts written by hand (the generator for these
/// architectures is not part of this branch): the checker is tested only on the bytes it reads.</summary>
sealed class ArchWorld : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"verifier-arch-check-{Guid.NewGuid():N}");
    public ModelWeights Model { get; }
    public TokenDataset Data { get; }
    public string DataPath => Path.Combine(Dir, "data.jsonl");
    public string CcDir => Path.Combine(Dir, "cc");
    public ArchForward Arch { get; }
    public ModelConfig C => Model.Config;

    public ArchWorld(ModelConfig config, ulong seed, int sequences = 4, double std = 0.2, Action<ModelWeights>? edit = null)
    {
        Directory.CreateDirectory(Dir);
        var random = ModelWeights.Random(config.Validated(), seed, std);
        edit?.Invoke(random);   // tests that forge: weights changed in place before they are written
        random.SaveInto(Dir);
        Model = ModelWeights.Load(Dir);
        var r = new Rng(seed + 17);
        var seqs = new List<Sequence>();
        for (int i = 0; i < sequences; i++)
        {
            int T = 1 + r.NextInt(config.NCtx);
            var tokens = Enumerable.Range(0, T).Select(_ => r.NextInt(config.DVocab)).ToArray();
            var labels = Enumerable.Range(0, T).Select(t => t == T - 1 || r.NextInt(2) == 0 ? r.NextInt(config.DVocabOut) : -1).ToArray();
            seqs.Add(new Sequence(tokens, labels));
        }
        Data = new TokenDataset(seqs);
        Data.Save(DataPath);
        Data = TokenDataset.Load(DataPath, Model.Config);
        Arch = new ArchForward(Model);
    }

    /// <summary>The exact float64 cross-entropy sum of sequence q (ReferenceForward).</summary>
    public double TrueLoss(int q)
    {
        var s = Data.Sequences[q];
        var logits = ReferenceForward.Run(Model, s.Tokens).Logits;
        double sum = 0;
        for (int t = 0; t < s.Tokens.Length; t++) if (s.Labels[t] >= 0) sum += ReferenceForward.CrossEntropy(logits, t, s.Labels[t]);
        return sum;
    }

    public static JsonObject Step(int id, string lemma, int[] inputs, JsonObject scope, JsonObject claim, long flops, bool dependent, JsonObject? data = null)
    {
        var o = new JsonObject
        {
            ["id"] = id, ["lemma"] = lemma, ["inputs"] = new JsonArray(inputs.Select(i => (JsonNode)i).ToArray()),
            ["scope"] = scope, ["claim"] = claim,
        };
        if (data is not null) o["data"] = data;
        o["cost"] = new JsonObject { ["flops"] = flops, ["dataset_dependent"] = dependent };
        return o;
    }

    /// <summary>A whole transcript around <paramref name="steps"/>; its final step is the last one, whose b0 is the result.</summary>
    public JsonObject Transcript(string strategy, List<JsonObject> steps, bool crosscoder = false)
    {
        long dep = 0, indep = 0;
        foreach (var s in steps)
        {
            long f = s["cost"]!["flops"]!.GetValue<long>();
            if (s["cost"]!["dataset_dependent"]!.GetValue<bool>()) dep += f; else indep += f;
        }
        var artefacts = new JsonObject
        {
            ["model_weights"] = new JsonObject { ["sha256"] = Hashing.Sha256File(Path.Combine(Dir, ModelWeights.WeightsFileName)) },
            ["model_config"] = new JsonObject { ["sha256"] = Hashing.Sha256File(Path.Combine(Dir, ModelConfig.FileName)) },
            ["dataset"] = new JsonObject { ["sha256"] = Data.ContentHash() },
        };
        if (crosscoder)
        {
            artefacts["crosscoder_weights"] = new JsonObject { ["sha256"] = Hashing.Sha256File(Path.Combine(CcDir, CrosscoderWeights.WeightsFileName)) };
            artefacts["crosscoder_config"] = new JsonObject { ["sha256"] = Hashing.Sha256File(Path.Combine(CcDir, CrosscoderConfig.FileName)) };
        }
        var last = steps[^1];
        return new JsonObject
        {
            ["schema"] = TranscriptWriter.Schema,
            ["artefacts"] = artefacts,
            ["strategy"] = new JsonObject { ["name"] = strategy },
            ["steps"] = new JsonArray(steps.Select(s => (JsonNode)s).ToArray()),
            ["interactions"] = new JsonArray(),
            ["result"] = new JsonObject { ["b0"] = last["claim"]!["b0"]?.GetValue<double>() ?? 0, ["final_step"] = last["id"]!.GetValue<int>() },
            ["cost"] = new JsonObject
            {
                ["flops"] = dep + indep, ["flops_dataset_dependent"] = dep, ["flops_dataset_independent"] = indep,
                ["advice_bits"] = 0.0, ["precision_bits"] = 64, ["bits"] = (double)(dep + indep) * 384,
            },
        };
    }

    public JsonObject Mean(int id, int[] inputs, double sum, string lemma = "MEAN", long? errors = null)
    {
        var claim = new JsonObject { ["b0"] = Up(U.Div(sum, Data.LabelledPositions)) };
        if (errors is { } e) claim["errors"] = e;
        return Step(id, lemma, inputs, new JsonObject { ["positions"] = Data.LabelledPositions }, claim,
            lemma == "MEAN" ? inputs.Length + 1 : Data.LabelledPositions + 1, true);
    }

    /// <summary>A claim a little above a certified upper end (the generator's R3 slack).</summary>
    public static double Up(double x) => Math.BitIncrement(x + Math.Abs(x) * Math.Pow(2, -24) + Math.Pow(2, -40));

    /// <summary>Brute force: one BF step per sequence with <paramref name="claim"/>(q, certified), then MEAN.</summary>
    public JsonObject BruteForce(Func<int, double, double> claim)
    {
        var steps = new List<JsonObject>();
        double sum = 0;
        for (int q = 0; q < Data.Count; q++)
        {
            var seq = Data.Sequences[q];
            double c = claim(q, Arch.Sequence(seq).Loss);
            sum = U.Add(sum, c);
            steps.Add(Step(q, "BF", [], new JsonObject { ["sequence"] = q }, new JsonObject { ["loss_sum"] = c }, Costs.BruteForce(C, seq.Labels), true));
        }
        steps.Add(Mean(Data.Count, Enumerable.Range(0, Data.Count).ToArray(), sum));
        return Transcript("brute-force", steps);
    }

    /// <summary>Brute force in blocks of two sequences (BFB), then MEAN.</summary>
    public JsonObject BruteForceBlocks(Func<int, double, double> claim)
    {
        var steps = new List<JsonObject>();
        double total = 0;
        long allErrors = 0;
        for (int first = 0; first < Data.Count; first += 2)
        {
            int end = Math.Min(Data.Count, first + 2);
            double sum = 0; long flops = 0, errors = 0;
            for (int q = first; q < end; q++)
            {
                var (loss, wrong) = Arch.Sequence(Data.Sequences[q]);
                sum = U.Add(sum, loss); errors += wrong;
                flops += Costs.BruteForce(C, Data.Sequences[q].Labels);
            }
            double c = claim(first, sum);
            total = U.Add(total, c); allErrors += errors;
            steps.Add(Step(steps.Count, "BFB", [], new JsonObject { ["first"] = first, ["end"] = end }, new JsonObject { ["loss_sum"] = c, ["errors"] = errors }, flops, true));
        }
        steps.Add(Mean(steps.Count, Enumerable.Range(0, steps.Count).ToArray(), total, errors: allErrors));
        return Transcript("brute-force", steps);
    }

    /// <summary>The certified IP row at position t: the box of every token (plus W_pos) at each position ≤ t, propagated.</summary>
    public double[] IpRow(int t)
    {
        int d = C.DModel; var we = Model["embed.W_E"].Data; var wp = C.HasPosEmbed ? Model["pos_embed.W_pos"].Data : null;
        var box = new R[t + 1][];
        for (int u = 0; u <= t; u++)
        {
            box[u] = new R[d];
            for (int i = 0; i < d; i++)
            {
                double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                for (int x = 0; x < C.DVocab; x++) { lo = Math.Min(lo, we[x * d + i]); hi = Math.Max(hi, we[x * d + i]); }
                box[u][i] = wp is null ? new R(lo, hi) : new R(lo, hi) + R.Of(wp[u * d + i]);
            }
        }
        var h = Arch.Boxes(box, scores: false)[t];
        return Enumerable.Range(0, C.DVocabOut).Select(y => Forward.CeFromDiffs(Arch.LogitDiffsBox(h, y)).Hi).ToArray();
    }

    /// <summary>Trivial: one IP step per position with <paramref name="claim"/>(t, y, certified), then IPMEAN.</summary>
    public JsonObject Trivial(Func<int, int, double, double> claim)
    {
        var steps = new List<JsonObject>();
        var table = new double[C.NCtx][];
        for (int t = 0; t < C.NCtx; t++)
        {
            var row = IpRow(t);
            table[t] = row.Select((c, y) => claim(t, y, c)).ToArray();
            steps.Add(Step(t, "IP", [], new JsonObject { ["position"] = t },
                new JsonObject { ["ce_by_label"] = new JsonArray(table[t].Select(v => (JsonNode)v).ToArray()) }, Costs.TrivialTable(C, t), false));
        }
        double sum = 0;
        foreach (var s in Data.Sequences) for (int t = 0; t < s.Tokens.Length; t++) if (s.Labels[t] >= 0) sum = U.Add(sum, table[t][s.Labels[t]]);
        steps.Add(Mean(C.NCtx, Enumerable.Range(0, C.NCtx).ToArray(), sum, "IPMEAN"));
        return Transcript("trivial", steps);
    }

    /// <summary>Clustered with one cluster: the box of every sequence's embeddings, CL with every (t, y) cell, CLMEMBERS, MEAN.</summary>
    public JsonObject Clustered(Func<double, double> claim)
    {
        int d = C.DModel, T = Data.Sequences.Max(s => s.Tokens.Length);
        var box = new R[T][];
        for (int t = 0; t < T; t++)
        {
            double[] lo = Enumerable.Repeat(double.PositiveInfinity, d).ToArray(), hi = Enumerable.Repeat(double.NegativeInfinity, d).ToArray();
            foreach (var s in Data.Sequences.Where(s => s.Tokens.Length > t))
            {
                var e = Arch.Embed(s.Tokens[t], t);
                for (int i = 0; i < d; i++) { lo[i] = Math.Min(lo[i], e[i].Lo); hi[i] = Math.Max(hi[i], e[i].Hi); }
            }
            box[t] = Enumerable.Range(0, d).Select(i => new R(lo[i], hi[i])).ToArray();
        }
        var h = Arch.Boxes(box, scores: true);
        var ce = new JsonArray();
        var table = new Dictionary<(int, int), double>();
        for (int t = 0; t < T; t++)
            for (int y = 0; y < C.DVocabOut; y++)
            {
                table[(t, y)] = claim(Forward.CeFromDiffs(Arch.LogitDiffsBox(h[t], y)).Hi);
                ce.Add(new JsonArray(t, y, table[(t, y)]));
            }
        int V = C.DVocabOut;
        long clFlops = Costs.Forward(C, T, 0) * 2 + table.Count * ((V - 1) * (4L * d + 2) + 3L * V + 1);
        var boxJson = new JsonArray(box.Select(b => (JsonNode)new JsonArray(
            new JsonArray(b.Select(x => (JsonNode)x.Lo).ToArray()), new JsonArray(b.Select(x => (JsonNode)x.Hi).ToArray()))).ToArray());
        var steps = new List<JsonObject> { Step(0, "CL", [], new JsonObject { ["cluster"] = 0 }, new JsonObject { ["ce"] = ce }, clFlops, false, new JsonObject { ["box"] = boxJson }) };
        double sum = 0; long own = 0;
        foreach (var s in Data.Sequences)
        {
            for (int t = 0; t < s.Tokens.Length; t++) if (s.Labels[t] >= 0) sum = U.Add(sum, table[(t, s.Labels[t])]);
            own += s.Tokens.Length * 3L * d + s.LabelledCount;
        }
        steps.Add(Step(1, "CLMEMBERS", [0], new JsonObject { ["cluster"] = 0 }, new JsonObject { ["loss_sum"] = sum }, own, true,
            new JsonObject { ["members"] = new JsonArray(Enumerable.Range(0, Data.Count).Select(i => (JsonNode)i).ToArray()) }));
        steps.Add(Mean(2, [1], sum));
        if (!Directory.Exists(CcDir)) SaveCrosscoder(1);
        return Transcript("clustered", steps, crosscoder: true);
    }

    /// <summary>Checks a transcript; the crosscoder is given exactly when the transcript names one.</summary>
    public Verdict Check(JsonObject transcript)
    {
        string path = Path.Combine(Dir, "transcript.json");
        File.WriteAllText(path, transcript.ToJsonString());
        bool crosscoder = transcript["artefacts"]!.AsObject().ContainsKey("crosscoder_weights");
        return TranscriptChecker.Check(path, Dir, crosscoder ? CcDir : null, DataPath);
    }

    /// <summary>A random top-k crosscoder on every site of the model, on disk.</summary>
    public void SaveCrosscoder(ulong seed)
    {
        var sites = C.SiteNames();
        var cfg = new CrosscoderConfig(4, C.DModel, sites, CrosscoderModes.TopK, 2, null, Enumerable.Repeat(1.0, sites.Count).ToArray(),
            Hashing.Sha256File(Path.Combine(Dir, ModelWeights.WeightsFileName)), null, 0);
        var r = new Rng(seed);
        var tensors = CrosscoderWeights.Shapes(cfg).ToDictionary(s => s.Name, s =>
            new NamedTensor(s.Name, s.Shape, Enumerable.Range(0, s.Shape.Aggregate(1, (a, b) => a * b)).Select(_ => r.NextDouble() - 0.5).ToArray(), "F64"));
        Directory.CreateDirectory(CcDir);
        new CrosscoderWeights(cfg, tensors).SaveInto(CcDir);
    }

    public void Dispose() => Directory.Delete(Dir, true);
}

/// <summary>Issue 13, checker side: the R3 enclosures contain the exact functions, BF/BFB/IP/CL certify every family
/// and contain its true loss, forged claims are rejected and the crosscoder lemmas refuse non-basic models by name.</summary>
public class ArchCheckerTests(ITestOutputHelper output)
{
    static ModelConfig Basic(int layers = 1, bool attnOnly = false, int nCtx = 4) => ModelConfig.Create(8, 2, 4, 12, layers, nCtx, 7, 7, attnOnly);

    /// <summary>The shared family table (tests/Families), and two more combinations.</summary>
    public static IReadOnlyList<(string Name, ModelConfig Config)> FamilyTable() =>
    [
        .. Verifier.TestSupport.Families.Table,
        ("lnpre-final-rms-gated-gelu", Basic(1) with { Normalization = NormKind.LNPre, FinalRms = true, Act = ActKind.Gelu, GatedMlp = true }),
        ("local-gqa-silu", Basic(2) with { Act = ActKind.Silu, AttnTypes = "local,local", WindowSize = 1, NKeyValueHeads = 1, ParallelAttnMlp = true }),
    ];

    public static IEnumerable<object[]> Families() => FamilyTable().Select(f => new object[] { f.Name });
    static ModelConfig Family(string name) => FamilyTable().Single(f => f.Name == name).Config.Validated();

    static bool In(double x, R r, double tol = 0) => r.Lo - tol <= x && x <= r.Hi + tol;

    // ---- (a) the enclosures -----------------------------------------------------------------------------------------
    static R RandomBox(Rng r, double scale)
    {
        double c = (r.NextDouble() - 0.5) * 2 * scale, w = r.NextInt(4) == 0 ? 0 : r.NextDouble() * scale * (r.NextInt(2) == 0 ? 0.01 : 1);
        return new R(c - w, c + w);
    }

    static double Inside(Rng r, R b) => r.NextInt(5) switch { 0 => b.Lo, 1 => b.Hi, _ => Math.Clamp(b.Lo + r.NextDouble() * (b.Hi - b.Lo), b.Lo, b.Hi) };

    [Property(MaxTest = 200)]
    public void Every_normalisation_encloses_ReferenceForward_at_every_point_of_the_box(ulong seed)
    {
        var r = new Rng(seed);
        int d = 1 + r.NextInt(9);
        foreach (var kind in new[] { NormKind.LN, NormKind.LNPre, NormKind.RMS, NormKind.RMSPre })
        {
            double eps = r.NextInt(3) switch { 0 => 1e-5, 1 => 1e-12, _ => r.NextDouble() };
            var c = ModelConfig.Create(d, 1, 1, 2, 1, 2, 3, 3, false) with { Normalization = kind, Eps = eps };
            var w = ModelWeights.Random(c.Validated(), seed, std: 1.0);
            double scale = r.NextInt(3) switch { 0 => 1e-3, 1 => 1, _ => 100 };
            var box = Enumerable.Range(0, d).Select(_ => RandomBox(r, scale)).ToArray();
            double[]? g = kind is NormKind.LN or NormKind.RMS ? w["ln_final.w"].Data : null, bias = kind == NormKind.LN ? w["ln_final.b"].Data : null;
            var y = ArchIntervals.Normalize(kind, box, g, bias, eps);                            // N ∩ N′
            var yN = ArchIntervals.Normalize(kind, box, g, bias, eps, meanValue: false);         // rule N alone
            for (int i = 0; i < d; i++) Assert.True(y[i].Lo >= yN[i].Lo && y[i].Hi <= yN[i].Hi, "N ∩ N′ is inside N");
            for (int k = 0; k < 20; k++)
            {
                var x = new double[1, d];
                for (int i = 0; i < d; i++) x[0, i] = Inside(r, box[i]);
                var exact = ReferenceForward.Normalize(w, "ln_final.", kind, x);
                for (int i = 0; i < d; i++)
                    Assert.True(In(exact[0, i], y[i], 1e-12 * (1 + Math.Abs(exact[0, i]))) && In(exact[0, i], yN[i], 1e-12 * (1 + Math.Abs(exact[0, i]))),
                        $"{kind} d={d} eps={eps:R}: coordinate {i} = {exact[0, i]:R} outside [{y[i].Lo:R}, {y[i].Hi:R}] or [{yN[i].Lo:R}, {yN[i].Hi:R}]");
            }
            double root = Math.Sqrt(d) * (1 + 1e-15);
            if (kind is NormKind.LNPre or NormKind.RMSPre) Assert.All(y, v => Assert.True(v.Lo >= -root && v.Hi <= root, "the √d clamp"));
        }
    }

    /// <summary>N′ earns its keep: on narrow boxes around a residual, N ∩ N′ is clearly narrower than rule N alone (LN).</summary>
    [Fact]
    public void The_mean_value_form_narrows_normalisations_of_narrow_boxes()
    {
        var r = new Rng(41);
        foreach (var kind in new[] { NormKind.LNPre })   // RMS: rule N is already first order, N′ is not applied
        {
            double ratio = 0;
            for (int n = 0; n < 50; n++)
            {
                var box = Enumerable.Range(0, 32).Select(_ => { double c = r.NextDouble() - 0.5, h = 1e-9 * r.NextDouble(); return new R(c - h, c + h); }).ToArray();
                double Width(R[] v) => v.Sum(x => x.Hi - x.Lo);
                ratio += Width(ArchIntervals.Normalize(kind, box, null, null, 1e-5)) / Width(ArchIntervals.Normalize(kind, box, null, null, 1e-5, meanValue: false)) / 50;
            }
            output.WriteLine($"{kind}: width(N ∩ N′) / width(N) = {ratio:F3} on narrow boxes (d = 32)");
            Assert.True(ratio < 0.9, $"{kind}: {ratio}");
        }
    }

    [Property(MaxTest = 300)]
    public void Every_activation_encloses_its_exact_function_at_every_point_of_the_box(ulong seed)
    {
        var r = new Rng(seed);
        double scale = r.NextInt(4) switch { 0 => 0.5, 1 => 3, 2 => 30, _ => 1e-6 };
        var box = RandomBox(r, scale);
        if (r.NextInt(4) == 0) box = new R(-1.28 - r.NextDouble() * 0.01, -0.75 + r.NextDouble() * 0.01);   // around the minima
        foreach (var kind in Enum.GetValues<ActKind>())
        {
            var y = ArchIntervals.Act(kind, box);
            Assert.True(y.Lo <= y.Hi);
            for (int k = 0; k < 30; k++)
            {
                double x = Inside(r, box), exact = Activation.Apply(kind, x);
                Assert.True(In(exact, y, 1e-15 * Math.Abs(exact)), $"{kind} on [{box.Lo:R}, {box.Hi:R}] at {x:R}: {exact:R} outside [{y.Lo:R}, {y.Hi:R}]");
            }
        }
    }

    /// <summary>The floors −0.18 (every gelu) and −0.28 (silu), proved by evaluation with a margin (proofs/R3): on each cell
    /// [x₁, x₂] ⊂ [−X, 0], f(x) = −|x|·g(x) with g increasing in x (Φ, or σ(2u(x)) for the tanh forms, or σ(x)), so
    /// f ≥ −|x₁|·g(x₂); beyond −X the tail bounds of the proof hold. Cell width 10⁻⁴, float64 error ≪ the margin.</summary>
    [Fact]
    public void The_activation_floors_are_below_every_minimum_with_margin()
    {
        static double Sig(double z) => 1 / (1 + Math.Exp(-z));
        (string, double Floor, double X, Func<double, double> G)[] cases =
        [
            ("gelu", ArchIntervals.GeluFloor, 1.3, Activation.Phi),
            ("gelu_new", ArchIntervals.GeluFloor, 3, x => Sig(2 * Activation.TanhGeluC * (x + 0.044715 * x * x * x))),
            ("gelu_fast", ArchIntervals.GeluFloor, 3, x => Sig(2 * Activation.GeluFastC * x * (1 + 0.044715 * x * x))),
            ("silu", ArchIntervals.SiluFloor, 3, Sig),
        ];
        foreach (var (name, floor, X, g) in cases)
        {
            double worst = 0;
            const double step = 1e-4;
            for (double x1 = -X; x1 < 0; x1 += step)
            {
                double x2 = Math.Min(0, x1 + step);
                worst = Math.Max(worst, Math.Abs(x1) * g(x2) * (1 + 1e-12));
            }
            output.WriteLine($"{name}: max |f| on [−{X}, 0] ≤ {worst:F6} (floor {floor})");
            Assert.True(-worst > floor + 1e-3, $"{name}: the cell bound {-worst} is not above the floor {floor} with margin 1e-3");
        }
        // Tails: gelu: |x|Φ(x) ≤ φ(x) for x ≤ −1.3 (Mills), φ(1.3) < 0.172; tanh forms and silu: |x|e^{−c|x|} with c ≥ 1, decreasing beyond 1.
        Assert.True(Math.Exp(-1.3 * 1.3 / 2) / Math.Sqrt(2 * Math.PI) < 0.172);
        Assert.True(3 * Math.Exp(-2 * 0.79788 * 3) < 0.18 && 3 * Math.Exp(-3) < 0.28);
        // The floors are not vacuous: the true minima lie just above them.
        Assert.True(Activation.Apply(ActKind.Gelu, -0.7518) < -0.1699 && Activation.Apply(ActKind.Silu, -1.2785) < -0.2784);
    }

    /// <summary>T3's slope constants: f' enclosed in interval arithmetic on cells of width 10⁻³ over [−20, 20] (u increasing,
    /// tanh and σ increasing, so each factor's range over a cell comes from its ends), against 1.13 (every gelu) and 1.11 (silu)
    /// with a margin; the tails beyond ±20 are in proofs/T3-normalised-tables.md.</summary>
    [Fact]
    public void The_activation_slopes_are_below_their_constants()
    {
        static (double Lo, double Hi) Mul((double Lo, double Hi) a, (double Lo, double Hi) b)
        {
            double p = a.Lo * b.Lo, q = a.Lo * b.Hi, r = a.Hi * b.Lo, t = a.Hi * b.Hi;
            return (Math.Min(Math.Min(p, q), Math.Min(r, t)), Math.Max(Math.Max(p, q), Math.Max(r, t)));
        }
        static double Sig(double z) => 1 / (1 + Math.Exp(-z));
        const double c3 = 0.044715;
        (string Name, double L, Func<double, double> U, Func<double, double> Du, bool Silu)[] cases =
        [
            ("gelu_new", ArchIntervals.Slope(ActKind.GeluNew), x => Activation.TanhGeluC * (x + c3 * x * x * x), x => Activation.TanhGeluC * (1 + 3 * c3 * x * x), false),
            ("gelu_fast", ArchIntervals.Slope(ActKind.GeluFast), x => Activation.GeluFastC * x * (1 + c3 * x * x), x => Activation.GeluFastC * (1 + 3 * c3 * x * x), false),
            ("silu", ArchIntervals.Slope(ActKind.Silu), x => x, _ => 1, true),
        ];
        foreach (var (name, L, u, du, silu) in cases)
        {
            double worst = 0;
            const double h = 1e-3;
            for (int k = 0; k < 40000; k++)
            {
                double x1 = -20 + k * h, x2 = x1 + h;
                (double, double) X = (x1, x2);
                (double Lo, double Hi) f;
                if (silu)
                {
                    (double Lo, double Hi) s = (Sig(x1), Sig(x2));                                  // σ increasing
                    var inner = Mul(X, (1 - s.Hi, 1 - s.Lo));
                    f = Mul(s, (1 + inner.Lo, 1 + inner.Hi));
                }
                else
                {
                    (double Lo, double Hi) t = (Math.Tanh(u(x1)), Math.Tanh(u(x2)));               // u and tanh increasing
                    double sq1 = t.Lo * t.Lo, sq2 = t.Hi * t.Hi, sqLo = t.Lo <= 0 && t.Hi >= 0 ? 0 : Math.Min(sq1, sq2);
                    (double, double) sech = (1 - Math.Max(sq1, sq2), 1 - sqLo);
                    double d1 = du(x1), d2 = du(x2);
                    // u' = k(1 + 3c x²) grows with |x|: its range over the cell is from its ends, or from 0 when the cell holds 0
                    (double, double) D = (x1 <= 0 && x2 >= 0 ? du(0) : Math.Min(d1, d2), Math.Max(d1, d2));
                    var second = Mul(Mul(X, sech), D);
                    f = (0.5 * (1 + t.Lo) + 0.5 * second.Lo, 0.5 * (1 + t.Hi) + 0.5 * second.Hi);
                }
                worst = Math.Max(worst, Math.Max(Math.Abs(f.Lo), Math.Abs(f.Hi)) * (1 + 1e-12));
            }
            output.WriteLine($"{name}: max |f'| on [−20, 20] ≤ {worst:F6} (constant {L})");
            Assert.True(worst < L - 1e-4, $"{name}: the cell bound {worst} is not below {L} with margin 1e-4");
        }
        // gelu (erf): the analytic maximum Φ(√2) + √2φ(√2) and minimum Φ(−√2) − √2φ(√2).
        double phi = Math.Exp(-1) / Math.Sqrt(2 * Math.PI);
        Assert.True(Activation.Phi(Math.Sqrt(2)) + Math.Sqrt(2) * phi < ArchIntervals.Slope(ActKind.Gelu) - 1e-3);
        Assert.True(Math.Abs(Activation.Phi(-Math.Sqrt(2)) - Math.Sqrt(2) * phi) < ArchIntervals.Slope(ActKind.Gelu));
        Assert.Equal(1, ArchIntervals.Slope(ActKind.Relu));
    }

    /// <summary>Φ(x) = ½(1 + erf(x/√2)) in decimal (28 digits): erf(z) = (2/√π)·Σ 2ⁿz^{2n+1}/(2n+1)!! / e^{z²}, both positive
    /// series (no cancellation), for |z| ≤ 6.</summary>
    static double PhiDecimal(double x)
    {
        decimal z = Math.Abs((decimal)x) / 1.4142135623730950488016887242m, z2 = z * z;
        decimal term = z, sum = z, e = 1, et = 1;
        for (int n = 1; n < 400 && term > 1e-27m * sum; n++) { term *= 2 * z2 / (2 * n + 1); sum += term; }
        for (int k = 1; k < 400 && et > 1e-27m * e; k++) { et *= z2 / k; e += et; }
        decimal erf = 1.1283791670955125738961589031m * sum / e;
        return (double)(x >= 0 ? (1 + erf) / 2 : (1 - erf) / 2);
    }

    /// <summary>The gelu rule's premise: Activation.Phi is within 2⁻⁴⁵ of Φ (checked against 28-digit decimal on a grid of
    /// 1701 points and at random points in [−8.5, 8.5]; beyond, both lie within the Mills-ratio tail φ(x)/|x| &lt; 2⁻⁵³ of 0 or 1).</summary>
    [Fact]
    public void Phi_is_within_the_rules_margin_of_the_normal_cdf()
    {
        const double margin = 2.8421709430404007E-14;   // 2⁻⁴⁵
        var r = new Rng(5);
        double worst = 0;
        var points = Enumerable.Range(-850, 1701).Select(i => i / 100.0).Concat(Enumerable.Range(0, 2000).Select(_ => (r.NextDouble() - 0.5) * 17));
        foreach (double x in points)
        {
            double err = Math.Abs(Activation.Phi(x) - PhiDecimal(x));
            worst = Math.Max(worst, err);
            Assert.True(err <= margin / 4, $"Phi({x:R}) = {Activation.Phi(x):R}, decimal {PhiDecimal(x):R}");
        }
        output.WriteLine($"max |Phi − Φ| on [−8.5, 8.5]: {worst:G3} (margin 2⁻⁴⁵ = {margin:G3})");
        for (double x = 8.5; x < 1e4; x *= 1.01)
        {
            double tail = Math.Exp(-x * x / 2) / Math.Sqrt(2 * Math.PI) / x;   // Φ(−x) ≤ φ(x)/x
            Assert.True(Activation.Phi(-x) >= 0 && Activation.Phi(-x) <= tail + 1e-300 && Activation.Phi(x) <= 1 && Activation.Phi(x) >= 1 - 2.3e-16);
            Assert.True(tail < margin / 4);
        }
    }

    [Property(MaxTest = 200)]
    public void Rotary_encloses_the_exact_rotation_for_both_pairings(ulong seed)
    {
        var r = new Rng(seed);
        int dh = 2 * (1 + r.NextInt(4)), rd = 2 * (1 + r.NextInt(dh / 2)), t = r.NextInt(2000);
        var c = (ModelConfig.Create(4, 1, dh, 2, 1, 2048, 3, 3, false) with
        { Rotary = true, RotaryDim = rd, RotaryAdjacentPairs = r.NextInt(2) == 0, RotaryBase = r.NextInt(2) == 0 ? 10000 : 1 + r.NextDouble() * 100 }).Validated();
        var box = Enumerable.Range(0, dh).Select(_ => RandomBox(r, 3)).ToArray();
        var y = (R[])box.Clone();
        ArchIntervals.Rotate(c, y, t);
        for (int k = 0; k < 20; k++)
        {
            var x = box.Select(b => Inside(r, b)).ToArray();
            var e = (double[])x.Clone();
            for (int i = 0; i < rd / 2; i++)
            {
                double th = ReferenceForward.RotaryAngle(c, t, i);
                var (a, b) = ReferenceForward.RotaryPair(c, i);
                e[a] = x[a] * Math.Cos(th) - x[b] * Math.Sin(th); e[b] = x[b] * Math.Cos(th) + x[a] * Math.Sin(th);
                // and the real rotation by the real angle, to the precision decimal gives the angle
                Assert.True(Math.Abs(Math.Cos(th)) <= 1 && In(Math.Cos(th), ArchIntervals.CosSin(th).Cos) && In(Math.Sin(th), ArchIntervals.CosSin(th).Sin));
            }
            for (int i = 0; i < dh; i++) Assert.True(In(e[i], y[i], 1e-15 * Math.Abs(e[i])), $"t={t} rd={rd} coordinate {i}: {e[i]:R} outside [{y[i].Lo:R}, {y[i].Hi:R}]");
        }
    }

    [Fact]
    public void Cos_and_sin_boxes_contain_high_precision_values_at_large_angles()
    {
        // cos and sin of 10⁶ and 2047 to 20 digits (the angles are exact float64 integers).
        Assert.True(In(0.93675212753314478699, ArchIntervals.CosSin(1e6).Cos) && In(-0.34999350217129295211, ArchIntervals.CosSin(1e6).Sin));
        Assert.True(In(Math.Cos(2047.0), ArchIntervals.CosSin(2047).Cos));
    }

    // ---- (b) every family: BF contains the true loss; boxes contain every input's forward ---------------------------------
    [Theory]
    [MemberData(nameof(Families))]
    public void BF_enclosure_of_every_sequence_contains_the_exact_loss_and_is_narrow(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 3, sequences: 6);
        double widest = 0;
        for (int q = 0; q < w.Data.Count; q++)
        {
            var (sum, _) = w.Arch.SequenceInterval(w.Data.Sequences[q]);
            double exact = w.TrueLoss(q), tol = 1e-12 * (1 + Math.Abs(exact));
            Assert.True(In(exact, sum, tol), $"{family} sequence {q}: true loss {exact:R} outside [{sum.Lo:R}, {sum.Hi:R}]");
            widest = Math.Max(widest, sum.Hi - sum.Lo);
            // Plain intervals pay for dependency (each normalisation widens ~4/s): far inside the claims' 2⁻²⁴ relative slack.
            Assert.True(sum.Hi - sum.Lo < 1e-7 * (1 + exact), $"{family} sequence {q}: width {sum.Hi - sum.Lo:G3}");
        }
        output.WriteLine($"{family}: widest BF enclosure {widest:G3} (loss sums ~{w.TrueLoss(0):G3})");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Box_propagation_contains_the_forward_of_every_input_in_the_box(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 5);
        var c = w.C;
        var r = new Rng(11);
        // IP-style boxes: every token at every position.
        int T = c.NCtx, d = c.DModel;
        var box = new R[T][];
        for (int t = 0; t < T; t++)
            box[t] = Enumerable.Range(0, d).Select(i =>
            {
                var v = Enumerable.Range(0, c.DVocab).Select(x => w.Arch.Embed(x, t)[i]).ToArray();
                return new R(v.Min(b => b.Lo), v.Max(b => b.Hi));
            }).ToArray();
        foreach (bool scores in new[] { false, true })
        {
            var h = w.Arch.Boxes(box, scores);
            for (int k = 0; k < 10; k++)
            {
                var tokens = Enumerable.Range(0, T).Select(_ => r.NextInt(c.DVocab)).ToArray();
                var run = ReferenceForward.Run(w.Model, tokens);
                var last = run.Sites[^1];
                for (int t = 0; t < T; t++)
                {
                    for (int i = 0; i < d; i++) Assert.True(In(last[t, i], h[t][i], 1e-12 * (1 + Math.Abs(last[t, i]))), $"{family} scores={scores}: position {t} coordinate {i}");
                    int y = r.NextInt(c.DVocabOut);
                    double ce = ReferenceForward.CrossEntropy(run.Logits, t, y);
                    Assert.True(ce <= Forward.CeFromDiffs(w.Arch.LogitDiffsBox(h[t], y)).Hi * (1 + 1e-12), $"{family}: CE at {t} above the box bound");
                }
            }
        }
    }

    /// <summary>(b) over random seeds, weight scales and families: BF contains the float64 loss of every sequence, and the
    /// IP and CL box propagations contain the final residual and bound the CE of random inputs in their boxes.</summary>
    [Property(MaxTest = 40)]
    public void Random_models_of_every_family_are_enclosed(ulong seed)
    {
        var table = FamilyTable();
        var (family, config) = table[(int)(seed % (ulong)table.Count)];
        double std = new[] { 0.1, 0.3, 0.8 }[(int)(seed / 16 % 3)];
        using var w = new ArchWorld(config.Validated(), seed, sequences: 3, std: std);
        for (int q = 0; q < w.Data.Count; q++)
        {
            var (sum, _) = w.Arch.SequenceInterval(w.Data.Sequences[q]);
            double exact = w.TrueLoss(q);
            if (!double.IsFinite(exact)) continue;
            Assert.True(In(exact, sum, 1e-12 * (1 + Math.Abs(exact))), $"{family} std {std} seed {seed} sequence {q}: {exact:R} outside [{sum.Lo:R}, {sum.Hi:R}]");
        }
        var c = w.C; var r = new Rng(seed ^ 0x5bd1e995);
        int T = c.NCtx, d = c.DModel;
        // a random box around random embeddings (CL-style) or the IP hull of every token
        bool ip = r.NextInt(2) == 0;
        var box = Enumerable.Range(0, T).Select(t => Enumerable.Range(0, d).Select(i =>
        {
            var v = Enumerable.Range(0, c.DVocab).Select(x => w.Arch.Embed(x, t)[i]).ToArray();
            return new R(v.Min(b => b.Lo), v.Max(b => b.Hi));
        }).ToArray()).ToArray();
        var h = w.Arch.Boxes(box, scores: !ip);
        for (int k = 0; k < 5; k++)
        {
            var tokens = Enumerable.Range(0, T).Select(_ => r.NextInt(c.DVocab)).ToArray();
            var run = ReferenceForward.Run(w.Model, tokens);
            for (int t = 0; t < T; t++)
            {
                for (int i = 0; i < d; i++)
                    Assert.True(In(run.Sites[^1][t, i], h[t][i], 1e-12 * (1 + Math.Abs(run.Sites[^1][t, i]))), $"{family} std {std} ip={ip}: position {t} coordinate {i}");
                int y = r.NextInt(c.DVocabOut);
                double ce = ReferenceForward.CrossEntropy(run.Logits, t, y);
                Assert.True(ce <= Forward.CeFromDiffs(w.Arch.LogitDiffsBox(h[t], y)).Hi * (1 + 1e-12) + 1e-12, $"{family} std {std} ip={ip}: CE at {t}");
            }
        }
    }

    [Fact]
    public void The_general_forward_agrees_with_the_basic_one_on_a_basic_model()
    {
        using var w = new ArchWorld(Basic(2), seed: 9, sequences: 3);
        for (int q = 0; q < w.Data.Count; q++)
        {
            var (sum, _) = w.Arch.SequenceInterval(w.Data.Sequences[q]);
            double exact = w.TrueLoss(q);
            Assert.True(In(exact, sum, 1e-12 * (1 + exact)));
        }
    }

    // ---- (c) transcripts through the checker --------------------------------------------------------------------------
    [Theory]
    [MemberData(nameof(Families))]
    public void Brute_force_trivial_and_clustered_transcripts_are_accepted_for_every_family(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 7);
        foreach (var (name, t) in new[]
        {
            ("BF", w.BruteForce((_, c) => ArchWorld.Up(c))), ("BFB", w.BruteForceBlocks((_, c) => ArchWorld.Up(c))),
            ("IP", w.Trivial((_, _, c) => ArchWorld.Up(c))), ("CL", w.Clustered(ArchWorld.Up)),
        })
        {
            var v = w.Check(t);
            Assert.True(v.Accepted, $"{family} {name}: {v.Summary}");
            var (trueLoss, accuracy, _) = ReferenceForward.Evaluate(w.Model, w.Data);
            Assert.True(v.B0 >= trueLoss, $"{family} {name}: b0 {v.B0} below the true loss {trueLoss}");
            if (v.AccuracyLb is { } a) Assert.True(a <= accuracy, $"{family} {name}: certified accuracy {a} above the true {accuracy}");
            if (name == "BFB") Assert.NotNull(v.AccuracyLb);
        }
    }

    [Theory]
    [InlineData("gpt2-like")]
    [InlineData("llama-like")]
    [InlineData("neo-like")]
    public void A_BF_claim_just_below_the_true_loss_is_rejected_naming_the_step_and_values(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 13);
        int victim = w.Data.Count - 1;
        double truth = w.TrueLoss(victim);
        var v = w.Check(w.BruteForce((q, c) => q == victim ? truth - 1e-9 * (1 + truth) : ArchWorld.Up(c)));
        Assert.False(v.Accepted);
        Assert.Equal(victim, v.Step);
        Assert.Equal("BF", v.Lemma);
        Assert.Contains($"loss_sum of sequence {victim}", v.Reason);
        Assert.True(v.Certified >= truth && v.Claimed < truth, v.Reason);
        output.WriteLine(v.Summary);
    }

    [Theory]
    [InlineData("pythia-like")]
    [InlineData("folded-lnpre")]
    public void A_BFB_claim_just_below_the_true_loss_of_its_block_is_rejected(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 17);
        double truth = w.TrueLoss(0) + w.TrueLoss(1);
        var v = w.Check(w.BruteForceBlocks((first, c) => first == 0 ? truth * (1 - 1e-9) : ArchWorld.Up(c)));
        Assert.False(v.Accepted);
        Assert.Equal("BFB", v.Lemma);
        Assert.Contains("loss_sum of sequences [0, 2)", v.Reason);
        // and the certified value itself, without slack, is accepted
        Assert.True(w.Check(w.BruteForceBlocks((_, c) => c)).Accepted);
    }

    [Theory]
    [InlineData("gptj-like")]
    [InlineData("rmspre")]
    public void An_IP_claim_below_the_certified_box_bound_is_rejected(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 19);
        var v = w.Check(w.Trivial((t, y, c) => t == 1 && y == 2 ? Math.BitDecrement(c) : c));
        Assert.False(v.Accepted);
        Assert.Equal("IP", v.Lemma);
        Assert.Equal(1, v.Step);
        Assert.Contains("ce_by_label[2] at position 1", v.Reason);
        Assert.True(w.Check(w.Trivial((_, _, c) => c)).Accepted);
    }

    [Fact]
    public void A_CL_claim_below_the_certified_box_bound_is_rejected()
    {
        using var w = new ArchWorld(Family("llama-like"), seed: 23);
        var v = w.Check(w.Clustered(c => c * (1 - 1e-6)));
        Assert.False(v.Accepted);
        Assert.Equal("CL", v.Lemma);
        Assert.Equal(0, v.Step);
        Assert.Contains("CE bound at position 0, label 0", v.Reason);
    }

    [Fact]
    public void A_cluster_box_that_misses_a_members_embedding_is_rejected_on_a_rotary_model()
    {
        using var w = new ArchWorld(Family("llama-like"), seed: 29);
        var t = w.Clustered(ArchWorld.Up);
        var lo = t["steps"]![0]!["data"]!["box"]![0]![0]!.AsArray(); var hi = t["steps"]![0]!["data"]!["box"]![0]![1]!.AsArray();
        double shift = hi[0]!.GetValue<double>() - lo[0]!.GetValue<double>() + 1e-3;   // move coordinate 0 of position 0 off every member
        lo[0] = lo[0]!.GetValue<double>() + shift; hi[0] = hi[0]!.GetValue<double>() + shift;
        var v = w.Check(t);
        Assert.False(v.Accepted);
        Assert.Contains("not inside the cluster's box", v.Reason);
    }

    [Theory]
    [InlineData("N1", "crosscoder-exhaustive", "gpt2-like")]
    [InlineData("L2", "crosscoder-exhaustive", "llama-like")]
    [InlineData("T1", "crosscoder-tables", "gptj-like")]
    [InlineData("INFO", "crosscoder-tables", "pythia-like")]
    [InlineData("CT", "crosscoder-compact", "attn-scale-3")]
    [InlineData("CC", "mixed", "pythia-like")]
    public void A_crosscoder_lemma_on_a_non_basic_model_is_refused_by_name_with_the_models_features(string lemma, string strategy, string family)
    {
        using var w = new ArchWorld(Family(family), seed: 31);
        w.SaveCrosscoder(1);
        var t = w.Transcript(strategy,
        [
            ArchWorld.Step(0, lemma, [], new JsonObject(), new JsonObject(), 0, false),
            w.Mean(1, [0], 0),
        ], crosscoder: true);
        var v = w.Check(t);
        Assert.False(v.Accepted);
        Assert.Equal(lemma, v.Lemma);
        Assert.Equal(0, v.Step);
        Assert.Contains($"lemma {lemma} covers only the basic architecture", v.Reason);
        Assert.Contains(w.C.Features()[0], v.Reason);
        Assert.Contains(string.Join(", ", w.C.Features()), v.Reason);
    }

    [Fact]
    public void A_basic_models_brute_force_through_the_hand_written_transcript_is_still_accepted()
    {
        using var w = new ArchWorld(Basic(1), seed: 37);
        // the basic path certifies by its own kernel; the general forward's bound plus slack covers it on this model
        Assert.True(w.Check(w.BruteForce((_, c) => ArchWorld.Up(c) + 1e-6)).Accepted);
    }
}
