using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using TorchSharp;
using Verifier.Core;
using Verifier.Crosscoders;
using Verifier.Model;
using static TorchSharp.torch;

namespace Verifier.Crosscoders.Tests;

public sealed class CrosscoderTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-cc-{Guid.NewGuid():N}");
    public CrosscoderTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    static readonly ModelConfig Config = ModelConfig.Create(8, 2, 4, 16, 1, 4, 10, 10, attnOnly: false);
    static readonly string Sha = new('a', 64);

    static TokenDataset Data(int count, ulong seed = 1) => new MaxOfKTask(10, 4).Generate(count, seed, "data");

    static CrosscoderConfig CcConfig(int width, string mode = CrosscoderModes.TopK, int? k = 4, int sites = 3) =>
        new(width, Config.DModel, Config.SiteNames().Take(sites).ToList(), mode, mode == CrosscoderModes.ReluL1 ? null : k,
            mode == CrosscoderModes.ReluL1 ? 1.0 : null, Enumerable.Repeat(1.0, sites).ToArray(), Sha, null, 0);

    /// <summary>W_enc = [I, −I], W_dec = [I; −I] per coordinate of every site: ReLU(x) − ReLU(−x) = x, exactly.</summary>
    static CrosscoderWeights Identity() => Identity(Config, 3);

    static CrosscoderWeights Identity(ModelConfig config, int S)
    {
        int d = config.DModel, n = 2 * S * d;
        var enc = new double[S * d * n]; var dec = new double[n * S * d];
        for (int s = 0; s < S; s++)
            for (int i = 0; i < d; i++)
            {
                int j = s * d + i;                    // flattened coordinate
                enc[j * n + j] = 1; enc[j * n + S * d + j] = -1;          // W_enc[s, i, feature]
                dec[j * S * d + j] = 1; dec[(S * d + j) * S * d + j] = -1; // W_dec[feature, s, i]
            }
        var c = new CrosscoderConfig(n, d, config.SiteNames().Take(S).ToList(), CrosscoderModes.ReluL1, null, 1.0,
            Enumerable.Repeat(1.0, S).ToArray(), Sha, null, 0);
        return new CrosscoderWeights(c, new Dictionary<string, NamedTensor>
        {
            ["W_enc"] = new("W_enc", [S, d, n], enc), ["W_dec"] = new("W_dec", [n, S, d], dec),
            ["b_enc"] = new("b_enc", [n], new double[n]), ["b_dec"] = new("b_dec", [S, d], new double[S * d]),
        });
    }

    [Fact]
    public void An_identity_crosscoder_reconstructs_exactly_and_splicing_it_in_changes_nothing()
    {
        var w = ModelWeights.Random(Config, 3, std: 0.5);
        var e = CrosscoderEvaluator.Evaluate(w, Identity(), Data(50));
        Assert.All(e.Sites, s =>
        {
            Assert.True(s.Fvu < 1e-12, $"{s.Site} FVU {s.Fvu}");
            Assert.Equal(1.0, s.Cosine, 1e-9);
            Assert.Equal(e.CleanLoss, s.SplicedLoss, 1e-6);
            Assert.Equal(1.0, s.LossRecovered, 1e-5);
        });
        Assert.Equal(50, e.Sequences);
        Assert.Equal(200, e.Tokens);
    }

    /// <summary>LayerNorm + gelu_new (gpt2-like) and a parallel rotary model (pythia-like, no resid_mid): splicing the
    /// identity back in at every site changes nothing, so the splice re-enters the right forward at the right site.</summary>
    [Theory]
    [InlineData("gpt2-like")]
    [InlineData("pythia-like")]
    [InlineData("llama-like")]
    public void Splicing_an_identity_crosscoder_into_other_families_changes_nothing(string arch)
    {
        var shape = ModelConfig.Create(8, 2, 4, 16, 2, 4, 10, 10, attnOnly: false);
        var config = arch switch
        {
            "gpt2-like" => shape with { Normalization = NormKind.LN, Act = ActKind.GeluNew },
            "pythia-like" => shape with { Normalization = NormKind.LN, Act = ActKind.Gelu, Rotary = true, RotaryDim = 2, ParallelAttnMlp = true },
            _ => shape with { Normalization = NormKind.RMS, Act = ActKind.Silu, GatedMlp = true, Rotary = true, RotaryDim = 4, NKeyValueHeads = 1 },
        };
        var w = ModelWeights.Random(config.Validated(), 3, std: 0.5);
        int S = config.SiteNames().Count;
        var e = CrosscoderEvaluator.Evaluate(w, Identity(config, S), Data(40));
        Assert.Equal(S, e.Sites.Count);
        Assert.All(e.Sites, s =>
        {
            Assert.True(s.Fvu < 1e-12, $"{s.Site} FVU {s.Fvu}");
            Assert.Equal(e.CleanLoss, s.SplicedLoss, 1e-6);
            Assert.True(Math.Abs(s.ZeroAblationLoss - e.CleanLoss) > 1e-3, $"{s.Site}: zero ablation {s.ZeroAblationLoss} = clean {e.CleanLoss}: the site was not patched");
        });
    }

    [Fact]
    public void A_crosscoder_trained_on_a_trained_gpt2_like_model_reconstructs_every_site()
    {
        var config = ModelConfig.Create(16, 2, 8, 32, 2, 4, 10, 10, attnOnly: false) with { Normalization = NormKind.LN, Act = ActKind.GeluNew };
        var task = new MaxOfKTask(10, 4);
        using var trained = Trainer.Train(task, config.Validated(), new TrainOptions(Steps: 120, BatchSize: 64, WarmupSteps: 10, Seed: 2));
        var weights = trained.ToWeights("F32");
        var o = new CrosscoderOptions(Width: 64, K: 8, Steps: 300, BatchTokens: 128, Seed: 3);
        var all = Enumerable.Range(0, config.SiteNames().Count).ToArray();
        var (cc, _) = CrosscoderTrainer.Train(trained, Data(500).Sequences, all, o);
        CrosscoderWeights saved;
        using (cc)
            saved = cc.ToWeights(new CrosscoderConfig(64, config.DModel, config.SiteNames(), CrosscoderModes.TopK, 8, null, cc.Scales, Sha, null, 3));
        var e = CrosscoderEvaluator.Evaluate(weights, saved, Data(200, seed: 7));
        Assert.Equal(5, e.Sites.Count);
        Assert.All(e.Sites, s => Assert.True(s.Fvu < 0.5 && s.Cosine > 0.5, $"{s.Site}: FVU {s.Fvu}, cosine {s.Cosine}"));
        Assert.True(double.IsFinite(e.CleanLoss) && e.Sites.All(s => double.IsFinite(s.SplicedLoss)));
    }

    [Fact]
    public void The_interaction_penalty_refuses_normalised_or_gated_models_by_field()
    {
        var ln = Config with { Normalization = NormKind.LN, Act = ActKind.GeluNew };
        using var model = new Transformer(ModelWeights.Random(ln, 1));
        var e = Assert.Throws<UnsupportedConfigException>(() =>
            CrosscoderTrainer.Train(model, Data(20).Sequences, [1], new CrosscoderOptions(Width: 8, K: 2, Steps: 1, InteractionPenalty: 0.1)));
        Assert.Contains("'normalization_type'", e.Message);
        var gated = Assert.Throws<UnsupportedConfigException>(() => CrosscoderTrainer.RequirePenaltyArchitecture(Config with { GatedMlp = true }));
        Assert.Contains("'gated_mlp'", gated.Message);
        Assert.Contains("'act_fn'", Assert.Throws<UnsupportedConfigException>(() => CrosscoderTrainer.RequirePenaltyArchitecture(Config with { Act = ActKind.Silu })).Message);
        CrosscoderTrainer.RequirePenaltyArchitecture(Config with { Rotary = true, RotaryDim = 2 });   // attention options do not matter
    }

    [Fact]
    public void Training_lowers_the_reconstruction_error_for_a_fixed_seed()
    {
        using var model = new Transformer(ModelWeights.Random(Config, 4, std: 0.5));
        var reports = new List<CrosscoderProgress>();
        var o = new CrosscoderOptions(Width: 32, K: 4, Steps: 200, BatchTokens: 128, Seed: 5);
        var (cc, summary) = CrosscoderTrainer.Train(model, Data(500).Sequences, [0, 1, 2], o, new Progress(reports));
        using (cc)
        {
            Assert.True(reports[^1].Mse < 0.5 * reports[0].Mse, $"mse {reports[0].Mse} → {reports[^1].Mse}");
            Assert.Equal(4.0, reports[^1].L0, 1e-9);
            Assert.Equal(200L * 128, summary.TokensSeen);
        }
        var again = new List<CrosscoderProgress>();
        var (cc2, _) = CrosscoderTrainer.Train(model, Data(500).Sequences, [0, 1, 2], o, new Progress(again));
        cc2.Dispose();
        Assert.Equal(reports.Select(r => r.Loss), again.Select(r => r.Loss));
    }

    sealed class Progress(List<CrosscoderProgress> list) : IProgress<CrosscoderProgress>
    {
        public void Report(CrosscoderProgress value) => list.Add(value);
    }

    [Fact]
    public void Normalisation_is_folded_into_the_saved_weights_so_decoding_is_in_model_units()
    {
        // Large weights: activations far from unit scale, so c_s ≠ 1 and a missing fold would show.
        var weights = ModelWeights.Random(Config, 6, std: 8.0);
        using var model = new Transformer(weights);
        var o = new CrosscoderOptions(Width: 64, K: 8, Steps: 300, BatchTokens: 128, Seed: 1);
        var (cc, _) = CrosscoderTrainer.Train(model, Data(500).Sequences, [0, 1, 2], o);
        using (cc)
        {
            Assert.All(cc.Scales, s => Assert.True(s < 0.5, $"scale {s}"));
            var saved = cc.ToWeights(CcConfig(64, k: 8));
            Assert.Equal(cc.Scales, saved.Config.NormalisationScales);
            using var folded = Crosscoder.FromWeights(saved);
            using var noGrad = no_grad();
            using var x = randn(20, 3, Config.DModel) * 30;
            var (f1, r1) = cc.Run(x);
            var (f2, r2) = folded.Run(x);
            Assert.True(r1.allclose(r2, rtol: 1e-4, atol: 1e-3 * r1.abs().max().item<float>()));
            Assert.True(f1.gt(0).eq(f2.gt(0)).all().item<bool>());
            var e = CrosscoderEvaluator.Evaluate(weights, saved, Data(100, seed: 9));
            Assert.True(e.MeanFvu < 0.5, $"FVU in model units {e.MeanFvu}");
        }
    }

    [Property(MaxTest = 30)]
    public bool TopK_keeps_exactly_k_features_per_token(PositiveInt kRaw, PositiveInt batchRaw, ulong seed)
    {
        int width = 40, k = kRaw.Get % width + 1, batch = batchRaw.Get % 16 + 1;
        var c = CcConfig(width, k: k, sites: 1);
        var w = new CrosscoderWeights(c, CrosscoderWeights.Shapes(c).ToDictionary(s => s.Name,
            s => new NamedTensor(s.Name, s.Shape, new double[s.Shape.Aggregate(1, (a, b) => a * b)])));
        using var cc = Crosscoder.FromWeights(w);
        using var g = new Generator(seed);
        using var pre = rand([batch, width], generator: g) + 0.01;   // all positive
        using var f = cc.Activate(pre);
        using var perRow = f.gt(0).sum(dim: 1);
        using var kept = f.gt(0).logical_and(f.eq(pre)).sum();
        return perRow.eq(k).all().item<bool>() && kept.item<long>() == (long)k * batch
               && f.max(dim: 1).values.eq(pre.max(dim: 1).values).all().item<bool>();
    }

    [Fact]
    public void Batch_topk_keeps_k_times_batch_features_over_the_batch_in_training()
    {
        var c = CcConfig(30, CrosscoderModes.BatchTopK, k: 3, sites: 1);
        var w = new CrosscoderWeights(c, CrosscoderWeights.Shapes(c).ToDictionary(s => s.Name,
            s => new NamedTensor(s.Name, s.Shape, new double[s.Shape.Aggregate(1, (a, b) => a * b)])));
        using var cc = Crosscoder.FromWeights(w);
        using var pre = rand(7, 30) + 0.01;
        Assert.Equal(21, cc.Activate(pre, training: true).gt(0).sum().item<long>());
        Assert.True(cc.Activate(pre).gt(0).sum(dim: 1).eq(3).all().item<bool>());
    }

    [Fact]
    public void Save_and_load_are_bit_exact()
    {
        using var model = new Transformer(ModelWeights.Random(Config, 7, std: 0.5));
        var (cc, _) = CrosscoderTrainer.Train(model, Data(100).Sequences, [0, 2], new CrosscoderOptions(Width: 16, K: 2, Steps: 20, BatchTokens: 64));
        CrosscoderWeights saved;
        using (cc) saved = cc.ToWeights(new CrosscoderConfig(16, 8, [Config.SiteNames()[0], Config.SiteNames()[2]], CrosscoderModes.TopK, 2, null, [1, 1], Sha, null, 0));
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Directory.CreateDirectory(a); Directory.CreateDirectory(b);
        saved.SaveInto(a);
        var back = CrosscoderWeights.Load(a);
        Assert.Equal(saved.Config.ToJson(), back.Config.ToJson());
        foreach (var (name, t) in saved.Tensors) Assert.Equal(t.Data, back[name].Data);
        back.SaveInto(b);
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "crosscoder.safetensors")), File.ReadAllBytes(Path.Combine(b, "crosscoder.safetensors")));
        Assert.Equal(File.ReadAllText(Path.Combine(a, "config.json")), File.ReadAllText(Path.Combine(b, "config.json")));
    }

    [Fact]
    public void A_crosscoder_trained_on_other_weights_is_refused_unless_allowed()
    {
        Identity().SaveInto(_dir);
        var other = new string('b', 64);
        var e = Assert.Throws<MismatchException>(() => CrosscoderWeights.Load(_dir, (Config, other, "/models/m")));
        Assert.Contains(Sha, e.Message);
        Assert.Contains(other, e.Message);
        Assert.Contains("--allow-model-mismatch", e.Message);
        Assert.NotNull(CrosscoderWeights.Load(_dir, (Config, other, "/models/m"), allowModelMismatch: true));
        Assert.NotNull(CrosscoderWeights.Load(_dir, (Config, Sha, "/models/m")));

        var wider = Config with { DModel = 16 };
        Assert.Throws<MismatchException>(() => CrosscoderWeights.Load(_dir, (wider, Sha, "/models/m"), allowModelMismatch: true));
    }

    [Theory]
    [InlineData("\"mode\": \"relu-l1\"", "\"mode\": \"gelu\"", "'mode'")]
    [InlineData("\"width\": 48", "\"width\": 0", "'width'")]
    [InlineData("\"normalisation_folded_into_weights\": true", "\"normalisation_folded_into_weights\": false", "folded")]
    [InlineData("\"format\": \"verifier-crosscoder/1\"", "\"format\": \"x\"", "'format'")]
    public void A_bad_config_is_refused_naming_the_field(string from, string to, string expected)
    {
        string json = Identity().Config.ToJson();
        Assert.Contains(from, json);
        var e = Assert.Throws<InvalidInputException>(() => CrosscoderConfig.Parse("cc/config.json", json.Replace(from, to)));
        Assert.Contains("cc/config.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Misshaped_or_non_finite_tensors_are_refused()
    {
        var id = Identity();
        var t = id.Tensors.ToDictionary();
        t["b_enc"] = new NamedTensor("b_enc", [3], new double[3]);
        Assert.Contains("'b_enc'", Assert.Throws<InvalidInputException>(() => new CrosscoderWeights(id.Config, t, "f")).Message);
        t = id.Tensors.ToDictionary();
        var d = t["W_dec"].Data.ToArray(); d[0] = double.PositiveInfinity;
        t["W_dec"] = t["W_dec"] with { Data = d };
        Assert.Contains("finite", Assert.Throws<InvalidInputException>(() => new CrosscoderWeights(id.Config, t, "f")).Message);
    }
}

public class InteractionPenaltyTests
{
    [Fact]
    public void The_penalty_is_zero_exactly_when_every_neuron_has_one_contributing_feature()
    {
        using var u = tensor(new float[] { 1, -2, 0, 3, 0.5f, 4 }, [3, 2]);                 // U [n = 3, m = 2]
        using var one = tensor(new float[] { 0, 2, 0, 1, 0, 0 }, [2, 3]);                     // one active feature per token
        Assert.Equal(0f, CrosscoderTrainer.InteractionPenaltyTerm(one, u).item<float>());
        using var two = tensor(new float[] { 1, 1, 0 }, [1, 3]);                              // features 0 and 1 both feed both neurons
        // neuron 0: |1| + |0| → 1 − 1 = 0; neuron 1: |−2| + |3| − 3 = 2; mean over neurons = 1.
        Assert.Equal(1f, CrosscoderTrainer.InteractionPenaltyTerm(two, u).item<float>(), 5);
    }
}

public class ActivationBufferTests
{
    [Fact]
    public void A_small_buffer_stays_bounded_and_still_serves_every_token()
    {
        var config = ModelConfig.Create(4, 1, 4, 4, 1, 3, 50, 50, false);
        using var model = new Transformer(ModelWeights.Random(config, 2));
        // 40 distinct sequences of 3 tokens: 120 tokens; a buffer of 30 tokens (a quarter).
        var seqs = Enumerable.Range(0, 40).Select(i => new Sequence([i, i + 1, i + 2], [-1, -1, 0])).ToList();
        long bytesPerToken = 4L * 3 * 4;
        using var buffer = new ActivationBuffer(model, seqs, [0, 1, 2], maxBytes: 30 * bytesPerToken, seed: 3);
        Assert.Equal(30, buffer.Capacity);
        Assert.False(buffer.HoldsEverything);

        // Every token's site-0 activation is W_E[x] + W_pos[t]: collect which (x, t) pairs were served.
        var w = model.ToWeights("F64");
        var keys = new Dictionary<string, (int, int)>();
        for (int i = 0; i < 40; i++)
            for (int t = 0; t < 3; t++)
                keys[Key(Enumerable.Range(0, 4).Select(j => w["embed.W_E"].Data[(i + t) * 4 + j] + w["pos_embed.W_pos"].Data[t * 4 + j]))] = (i, t);
        var seen = new HashSet<(int, int)>();
        for (int b = 0; b < 60; b++)
        {
            using var batch = buffer.Next(10);
            Assert.Equal([10L, 3, 4], batch.shape);
            var data = batch.select(1, 0).to(ScalarType.Float64).contiguous().data<double>().ToArray();
            for (int r = 0; r < 10; r++) seen.Add(keys[Key(data.Skip(r * 4).Take(4))]);
        }
        Assert.Equal(120, seen.Count);
    }

    static string Key(IEnumerable<double> v) => string.Join(",", v.Select(x => ((float)x).ToString("R")));
}
