using System.Text.Json;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Core;
using Verifier.TestSupport;
using Xunit.Abstractions;

namespace Verifier.Bounds.Tests;

/// <summary>brute-force, trivial and clustered on random small models of every TransformerLens family (the shared table
/// of tests/Families): the bounds are never below the float64 loss, brute force is within
/// 1e-6 of it, the forward enclosures hold the reference's logits, and every other strategy refuses by name.</summary>
public class ArchitectureBoundTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> FamilyNames() => Families.Names();

    static IReadOnlyList<(string Name, ModelConfig Config)> FamilyTable() => Families.Table;

    static ModelConfig Family(string name) => Families.Get(name);

    /// <summary>A model of one family with random weights, random sequences and a random crosscoder, on disk.</summary>
    sealed class FamilyWorld : IDisposable
    {
        public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"verifier-arch-bound-{Guid.NewGuid():N}");
        public ModelWeights Model { get; }
        public TokenDataset Data { get; }
        public string DataPath => Path.Combine(Dir, "data.jsonl");
        public string CcDir => Path.Combine(Dir, "cc");
        public CrosscoderWeights Crosscoder { get; }

        public FamilyWorld(ModelConfig config, ulong seed, double std = 0.4)
        {
            var r = new Rng(seed);
            Directory.CreateDirectory(Dir);
            ModelWeights.Random(config, seed, std).SaveInto(Dir);
            Model = ModelWeights.Load(Dir);   // F64 on disk: exactly what the bound sees
            var seqs = new List<Sequence>();
            int count = 2 + r.NextInt(6), vocab = config.DVocab;
            for (int i = 0; i < count; i++)
            {
                int T = 1 + r.NextInt(config.NCtx);
                var tokens = Enumerable.Range(0, T).Select(_ => r.NextInt(vocab)).ToArray();
                var labels = Enumerable.Range(0, T).Select(t => t == T - 1 || r.NextInt(2) == 0 ? r.NextInt(config.DVocabOut) : -1).ToArray();
                seqs.Add(new Sequence(tokens, labels));
            }
            Data = new TokenDataset(seqs);
            Data.Save(DataPath);
            var cfg = new CrosscoderConfig(6, config.DModel, config.SiteNames(), CrosscoderModes.TopK, 2, null,
                Enumerable.Repeat(1.0, config.SiteNames().Count).ToArray(), Hashing.Sha256File(Path.Combine(Dir, ModelWeights.WeightsFileName)), null, 0);
            var tensors = CrosscoderWeights.Shapes(cfg).ToDictionary(s => s.Name, s =>
                new NamedTensor(s.Name, s.Shape, Enumerable.Range(0, s.Shape.Aggregate(1, (a, b) => a * b)).Select(_ => (r.NextDouble() - 0.5) * 0.8).ToArray(), "F64"));
            Directory.CreateDirectory(CcDir);
            new CrosscoderWeights(cfg, tensors).SaveInto(CcDir);
            Crosscoder = CrosscoderWeights.Load(CcDir);
            // W_enc = [I, −I], W_dec = [I; −I] (ReLU, no sparsity): the features are the residuals themselves, so
            // distinct sequences have distinct features and k-means with k = |X| gives one sequence per cluster.
            var sites = config.SiteNames(); int S = sites.Count, d = config.DModel, n = 2 * S * d;
            var enc = new double[S * d * n]; var dec = new double[n * S * d];
            for (int j = 0; j < S * d; j++) { enc[j * n + j] = 1; enc[j * n + S * d + j] = -1; dec[j * S * d + j] = 1; dec[(S * d + j) * S * d + j] = -1; }
            var icfg = new CrosscoderConfig(n, d, sites, CrosscoderModes.ReluL1, null, 1.0, Enumerable.Repeat(1.0, S).ToArray(),
                Hashing.Sha256File(Path.Combine(Dir, ModelWeights.WeightsFileName)), null, 0);
            Directory.CreateDirectory(IdentityDir);
            new CrosscoderWeights(icfg, new Dictionary<string, NamedTensor>
            {
                ["W_enc"] = new("W_enc", [S, d, n], enc, "F64"), ["W_dec"] = new("W_dec", [n, S, d], dec, "F64"),
                ["b_enc"] = new("b_enc", [n], new double[n], "F64"), ["b_dec"] = new("b_dec", [S, d], new double[S * d], "F64"),
            }).SaveInto(IdentityDir);
        }

        public string IdentityDir => Path.Combine(Dir, "identity");

        public BoundResult Bound(string strategy, int clusters = 1, int block = 2, bool identity = false)
        {
            bool cc = Strategies.NeedsCrosscoder(strategy);
            string ccDir = identity ? IdentityDir : CcDir;
            return BoundProgram.Run(strategy, new BoundInputs(Model, Dir, Data, DataPath, cc ? CrosscoderWeights.Load(ccDir) : null, cc ? ccDir : null),
                Path.Combine(Dir, $"{strategy}-{clusters}.json"), computeTrueLoss: false, clusters: clusters, overwrite: true, block: block);
        }

        public void Dispose() => Directory.Delete(Dir, true);
    }

    [Property(MaxTest = 10)]
    public void Every_family_brute_force_is_above_and_within_1e_minus_6_of_the_true_loss_and_trivial_and_clustered_are_above(ulong seed)
    {
        foreach (var (name, config) in FamilyTable())
        {
            using var f = new FamilyWorld(config.Validated(), seed);
            double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
            double bf = Named(name, () => f.Bound(Strategies.BruteForce).B0);
            Assert.True(bf >= truth && bf - truth <= 1e-6 * Math.Max(truth, 1e-3), $"{name} seed {seed}: brute force {bf:R}, true loss {truth:R}");
            foreach (var (strategy, clusters) in new[] { (Strategies.Trivial, 1), (Strategies.Clustered, 1), (Strategies.Clustered, 3), (Strategies.Clustered, f.Data.Count) })
            {
                double b0 = Named($"{name} {strategy} c={clusters}", () => f.Bound(strategy, clusters, identity: clusters == f.Data.Count).B0);
                Assert.True(b0 >= truth && double.IsFinite(b0), $"{name} seed {seed}: {strategy} (c={clusters}) {b0:R} below the true loss {truth:R}");
                // One cluster per sequence, all distinct: point boxes, so clustered is brute force in boxes.
                bool distinct = f.Data.Sequences.Select(s => string.Join(",", s.Tokens)).Distinct().Count() == f.Data.Count;
                if (clusters == f.Data.Count && distinct)
                    Assert.True(b0 - truth <= 1e-6 * Math.Max(truth, 1e-3), $"{name} seed {seed}: clustered with point boxes {b0:R}, true loss {truth:R}");
            }
        }
    }

    /// <summary>Runs <paramref name="f"/>, naming the family in any exception that is not an assertion.</summary>
    static T Named<T>(string what, Func<T> f)
    {
        try { return f(); }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException) { throw new InvalidOperationException($"{what}: {e.Message}", e); }
    }

    static void AssertLogitsInside(ModelWeights w, Iv[] y, double[,] logits, int t, string what)
    {
        var c = w.Config;
        var box = IntervalModel.Affine(y, w["unembed.W_U"].Data, 0, c.DModel, c.DVocabOut, w["unembed.b_U"].Data, 0);
        for (int v = 0; v < c.DVocabOut; v++)
        {
            double z = logits[t, v], tol = 1e-11 * (1 + Math.Abs(z));
            Assert.True(box[v].Lo - tol <= z && z <= box[v].Hi + tol, $"{what}: logit {v} at {t} = {z:R} not in {box[v]}");
        }
    }

    [Property(MaxTest = 5)]
    public void Every_family_box_forward_holds_the_reference_logits_of_every_sequence_in_the_boxes(ulong seed)
    {
        var r = new Rng(seed);
        foreach (var (name, config) in FamilyTable())
        {
            var c = config.Validated();
            var w = ModelWeights.Random(c, seed, std: 0.4);
            var model = new IntervalModel(w);
            var arch = new ArchForward(w);
            int T = 1 + r.NextInt(c.NCtx);
            var seqs = Enumerable.Range(0, 1 + r.NextInt(4)).Select(_ => Enumerable.Range(0, T).Select(_ => r.NextInt(c.DVocab)).ToArray()).ToArray();
            var refs = seqs.Select(s => ReferenceForward.Run(w, s).Logits).ToArray();
            // Point boxes (BF): the enclosure holds the reference and is narrow (rotary's δ = 2⁻⁴⁰·(1 + |θ|) alone widens
            // these random two-layer models' outputs to ~1e-6; without rotary they stay below ~1e-8).
            var point = arch.Forward(Enumerable.Range(0, T).Select(t => arch.Embed(seqs[0][t], t)).ToArray(), scores: true, hull: false);
            for (int t = 0; t < T; t++)
            {
                AssertLogitsInside(w, point[t], refs[0], t, $"{name} BF");
                Assert.All(point[t], v => Assert.True(v.Width < (c.Rotary ? 1e-5 : 1e-7), $"{name} BF: {v} is wide"));
            }
            // The hull of the sequences' embeddings (CL, with scores) and of every token (IP, without).
            var box = Enumerable.Range(0, T).Select(t => seqs.Select(s => model.Embed(s[t], t)).Aggregate((a, b) => a.Zip(b, Iv.Hull).ToArray())).ToArray();
            var cl = BoxForward.Run(model, box, useScores: true);
            var all = Enumerable.Range(0, T).Select(t => Enumerable.Range(0, c.DVocab).Select(x => model.Embed(x, t)).Aggregate((a, b) => a.Zip(b, Iv.Hull).ToArray())).ToArray();
            var ip = BoxForward.Run(model, all, useScores: false);
            for (int i = 0; i < seqs.Length; i++)
                for (int t = 0; t < T; t++)
                {
                    AssertLogitsInside(w, cl[t], refs[i], t, $"{name} CL sequence {i}");
                    AssertLogitsInside(w, ip[t], refs[i], t, $"{name} IP sequence {i}");
                }
        }
    }

    [Property(MaxTest = 15)]
    public void A_non_basic_config_of_the_basic_function_gets_the_basic_paths_bounds(ulong seed, bool attnOnly, bool twoLayers)
    {
        // use_attn_scale false with d_head 1, or scale_attn_by_inverse_layer_idx in a one-layer model, is the basic function
        // under a non-basic config (divisor √1 = 1, layer factor 1): the scalar R3 path
        // (ArchForward) and the basic paths (FastForward's R2, IntervalModel, BoxForward) must agree up to rounding, and
        // differ only by their slack (2⁻²⁴ against 2⁻³⁰).
        var r = new Rng(seed);
        int dh = twoLayers ? 1 : 1 + r.NextInt(3), vocab = 3 + r.NextInt(5);
        var basic = ModelConfig.Create(2 + r.NextInt(5), 1 + r.NextInt(2), dh, 2 + r.NextInt(5), twoLayers ? 2 : 1, 2 + r.NextInt(3), vocab, vocab, attnOnly);
        var twin = (twoLayers ? basic with { UseAttnScale = false } : basic with { ScaleAttnByInverseLayerIdx = true }).Validated();
        using var a = new FamilyWorld(basic, seed); using var b = new FamilyWorld(twin, seed);
        Assert.True(a.Model.Config.IsBasic); Assert.False(b.Model.Config.IsBasic);   // as loaded from disk
        foreach (var (strategy, clusters) in new[] { (Strategies.BruteForce, 1), (Strategies.Trivial, 1), (Strategies.Clustered, 1), (Strategies.Clustered, 2) })
        {
            double x = a.Bound(strategy, clusters).B0, y = b.Bound(strategy, clusters).B0;
            double unslackX = x / (1 + 1.0 / (1 << 30)), unslackY = y / (1 + 1.0 / (1 << 24));
            Assert.True(y >= x, $"{strategy} c={clusters}: non-basic {y:R} below basic {x:R}");
            Assert.True(Math.Abs(unslackY - unslackX) <= 1e-9 * Math.Max(1, x), $"{strategy} c={clusters}: basic {x:R}, non-basic {y:R}");
        }
    }

    [Theory]
    [MemberData(nameof(FamilyNames))]
    public void Non_basic_brute_force_claims_carry_the_2_to_minus_24_slack(string family)
    {
        using var f = new FamilyWorld(Family(family), 7);
        var r = f.Bound(Strategies.BruteForce, block: 1);
        using var doc = JsonDocument.Parse(File.ReadAllText(r.Transcript));
        var bfb = doc.RootElement.GetProperty("steps").EnumerateArray().Where(s => s.GetProperty("lemma").GetString() == "BFB").ToList();
        Assert.Equal(f.Data.Count, bfb.Count);
        var c = f.Model.Config;
        for (int i = 0; i < f.Data.Count; i++)
        {
            var seq = f.Data.Sequences[i];
            var logits = ReferenceForward.Run(f.Model, seq.Tokens).Logits;
            double truth = Enumerable.Range(0, seq.Tokens.Length).Where(t => seq.Labels[t] >= 0).Sum(t => ReferenceForward.CrossEntropy(logits, t, seq.Labels[t]));
            double claim = bfb[i].GetProperty("claim").GetProperty("loss_sum").GetDouble();
            // 2⁻³⁰ would leave the claim below truth·(1 + 2⁻²⁴); the enclosure itself is ~1e-12 wide.
            Assert.True(claim >= truth * (1 + 1.0 / (1 << 24)) * (1 - 1e-11), $"{family} sequence {i}: claim {claim:R}, truth {truth:R}");
            Assert.True(claim <= truth * (1 + 1e-6), $"{family} sequence {i}: claim {claim:R} far above truth {truth:R}");
        }
    }

    [Theory]
    [InlineData(Strategies.CrosscoderExhaustive)]
    [InlineData(Strategies.CrosscoderTables)]
    [InlineData(Strategies.CrosscoderCompact)]
    [InlineData(Strategies.Mixed)]
    public void Every_other_strategy_refuses_a_non_basic_model_naming_the_strategy_and_its_options(string strategy)
    {
        using var f = new FamilyWorld(Family("llama-like"), 3);
        var e = Assert.Throws<UnsupportedConfigException>(() => f.Bound(strategy));
        Assert.Contains($"bound --strategy {strategy}", e.Message);
        foreach (var feature in f.Model.Config.Features()) Assert.Contains(feature, e.Message);
        Assert.Equal(ExitCodes.Unsupported, e.ExitCode);
    }

    [Fact]
    public void An_unknown_strategy_is_named_as_unknown_for_a_non_basic_model_too()
    {
        using var f = new FamilyWorld(Family("gpt2-like"), 3);
        var e = Assert.Throws<UsageException>(() => f.Bound("no-such-strategy"));
        Assert.Contains("unknown strategy", e.Message);
    }

    /// <summary>The table of the report: per family (seed 1), the float64 loss, brute force's gap, trivial's and clustered's b₀.</summary>
    [Fact]
    public void Family_table()
    {
        output.WriteLine($"{"family",-20} {"|X|",4} {"true loss",10} {"BF gap",9} {"trivial b0",11} {"clust. c=1",11} {"clust. c=3",11} {"c=|X| gap",10}");
        foreach (var (name, config) in FamilyTable())
        {
            using var f = new FamilyWorld(config.Validated(), 1);
            double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
            double bf = f.Bound(Strategies.BruteForce).B0, tr = f.Bound(Strategies.Trivial).B0;
            double c1 = f.Bound(Strategies.Clustered, 1).B0, c3 = f.Bound(Strategies.Clustered, 3).B0;
            double cn = f.Bound(Strategies.Clustered, f.Data.Count, identity: true).B0;
            output.WriteLine($"{name,-20} {f.Data.Count,4} {truth,10:G6} {bf - truth,9:G3} {tr,11:G6} {c1,11:G6} {c3,11:G6} {cn - truth,10:G3}");
            Assert.True(bf >= truth && tr >= truth && c1 >= truth && c3 >= truth && cn >= truth);
        }
    }
}
