using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using TorchSharp;
using Verifier.Core;
using Verifier.TestSupport;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Verifier.Model.Tests;

public class ForwardTests(ITestOutputHelper output)
{
    /// <summary>Random tiny configurations, attention-only and with MLP, d_vocab_out ≠ d_vocab sometimes.</summary>
    static ModelConfig RandomConfig(Rng r)
    {
        bool attnOnly = r.NextInt(3) == 0;
        int vocab = 2 + r.NextInt(9);
        return ModelConfig.Create(dModel: 1 + r.NextInt(8), nHeads: 1 + r.NextInt(3), dHead: 1 + r.NextInt(5), dMlp: 1 + r.NextInt(12),
            nLayers: 1 + r.NextInt(3), nCtx: 1 + r.NextInt(6), dVocab: vocab, dVocabOut: r.NextInt(2) == 0 ? vocab : 2 + r.NextInt(9), attnOnly);
    }

    static double RelErr(double a, double b) => Math.Abs(a - b) / Math.Max(1.0, Math.Max(Math.Abs(a), Math.Abs(b)));

    [Property(MaxTest = 60)]
    public bool TorchSharp_float64_forward_equals_the_plain_CSharp_forward_to_1e_9(ulong seed)
    {
        var r = new Rng(seed);
        var config = RandomConfig(r);
        double std = 0.3 + r.NextDouble();
        int B = 1 + r.NextInt(3), T = 1 + r.NextInt(config.NCtx);
        var (_, rel, sites) = Agreement(config, seed, r, std, B, T);
        return sites == config.SiteNames().Count && rel <= 1e-9;
    }

    /// <summary>Largest |TorchSharp − reference| over logits and sites, absolute and relative to max(1, |value|), for
    /// random weights of <paramref name="config"/> (std <paramref name="std"/>) on B random sequences of length T (default:
    /// 3 of full length).</summary>
    static (double Abs, double Rel, int Sites) Agreement(ModelConfig config, ulong seed, Rng? rng = null, double std = 0.5, int B = 3, int T = 0)
    {
        var r = rng ?? new Rng(seed);
        var w = ModelWeights.Random(config, seed, std);
        if (T == 0) T = config.NCtx;
        var seqs = Enumerable.Range(0, B).Select(_ =>
        {
            var t = Enumerable.Range(0, T).Select(_ => r.NextInt(config.DVocab)).ToArray();
            return new Sequence(t, new int[T]);
        }).ToList();
        using var model = new Transformer(w, ScalarType.Float64);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var sites = new List<Tensor>();
        var (tokens, _) = Transformer.Batch(seqs);
        var logits = model.Forward(tokens, sites).contiguous().data<double>().ToArray();
        var siteData = sites.Select(s => s.contiguous().data<double>().ToArray()).ToList();
        double abs = 0, rel = 0;
        void Compare(double a, double b) { abs = Math.Max(abs, Math.Abs(a - b)); rel = Math.Max(rel, RelErr(a, b)); }
        for (int b = 0; b < B; b++)
        {
            var reference = ReferenceForward.Run(w, seqs[b].Tokens);
            Assert.Equal(reference.Sites.Length, sites.Count);
            for (int t = 0; t < T; t++)
            {
                for (int v = 0; v < config.DVocabOut; v++) Compare(reference.Logits[t, v], logits[(b * T + t) * config.DVocabOut + v]);
                for (int s = 0; s < sites.Count; s++)
                    for (int i = 0; i < config.DModel; i++) Compare(reference.Sites[s][t, i], siteData[s][(b * T + t) * config.DModel + i]);
            }
        }
        return (abs, rel, sites.Count);
    }

    [Fact]
    public void Every_family_TorchSharp_float64_forward_equals_the_reference_forward_to_1e_12()
    {
        output.WriteLine($"{"family",-20} {"sites",5} {"max |diff|",12} {"max rel",12} {"eval rel",12}");
        var failed = new List<string>();
        foreach (var (name, config) in Families.Table)
        {
            var c = config.Validated();
            double abs = 0, rel = 0; int sites = 0;
            for (ulong seed = 1; seed <= 3; seed++)
            {
                var a = Agreement(c, seed);
                abs = Math.Max(abs, a.Abs); rel = Math.Max(rel, a.Rel); sites = a.Sites;
            }
            // What eval --reference reports: the batched evaluator's logits against the reference's on a dataset.
            var data = new TokenDataset(Enumerable.Range(0, 6).Select(i =>
                new Sequence(Enumerable.Range(0, 1 + i % c.NCtx).Select(t => (t * 3 + i) % c.DVocab).ToArray(), new int[1 + i % c.NCtx])).ToList());
            var eval = Evaluator.Evaluate(ModelWeights.Random(c, 9, std: 0.5), data, batchSize: 2, reference: true).Reference!;
            output.WriteLine($"{name,-20} {sites,5} {abs,12:E2} {rel,12:E2} {eval.MaxRel,12:E2}");
            if (!(rel <= 1e-12 && eval.MaxRel <= 1e-12)) failed.Add($"{name} ({rel:E2}, eval {eval.MaxRel:E2})");
        }
        Assert.True(failed.Count == 0, "families beyond 1e-12: " + string.Join(", ", failed));
    }

    /// <summary>eval --reference: the batched pass that runs the reference forward once per sequence reports exactly
    /// ReferenceForward.Evaluate's loss and accuracy (mixed lengths, unlabelled positions, several batches per length), and
    /// for overflowing weights throws its error, naming the first overflowing position in dataset order.</summary>
    [Fact]
    public void The_one_pass_reference_comparison_equals_the_reference_evaluation_exactly()
    {
        var c = ModelConfig.Create(8, 2, 4, 12, 2, 5, 7, 6, false).Validated();
        var r = new Rng(17);
        var data = new TokenDataset(Enumerable.Range(0, 23).Select(i =>
        {
            int T = 1 + r.NextInt(c.NCtx);
            return new Sequence(Enumerable.Range(0, T).Select(_ => r.NextInt(c.DVocab)).ToArray(),
                Enumerable.Range(0, T).Select(t => t == 0 && i % 3 == 0 ? -1 : r.NextInt(c.DVocabOut)).ToArray());
        }).ToList());
        var w = ModelWeights.Random(c, 4, std: 0.8);
        var one = Evaluator.Evaluate(w, data, batchSize: 3, reference: true);
        var plain = ReferenceForward.Evaluate(w, data);
        Assert.NotNull(one.Reference);
        Assert.Equal((plain.Loss, plain.Accuracy), (one.Reference.Loss, one.Reference.Accuracy));
        Assert.InRange(one.Reference.MaxRel, 0, 1e-12);
        Assert.Null(Evaluator.Evaluate(w, data, batchSize: 3).Reference);

        var huge = ModelWeights.Random(c, 4, std: 1e120);
        var expected = Assert.Throws<NumericException>(() => ReferenceForward.Evaluate(huge, data));
        var got = Assert.Throws<NumericException>(() => Evaluator.Evaluate(huge, data, batchSize: 3, reference: true));
        Assert.Equal(expected.Message, got.Message);
    }

    [Fact]
    public void A_local_layer_does_not_read_keys_outside_its_window()
    {
        var local = ModelConfig.Create(8, 2, 4, 12, 1, 5, 7, 7, false) with { Normalization = NormKind.LN, Act = ActKind.GeluNew, AttnTypes = "local", WindowSize = 2 };
        using var m = new Transformer(ModelWeights.Random(local.Validated(), 5, std: 0.5), ScalarType.Float64);
        using var global = new Transformer(ModelWeights.Random(local with { AttnTypes = null, WindowSize = 0 }, 5, std: 0.5), ScalarType.Float64);
        using var noGrad = no_grad();
        var (x, _) = Transformer.Batch([new Sequence([1, 2, 3, 4, 5], new int[5])]);
        var (y, _) = Transformer.Batch([new Sequence([6, 2, 3, 4, 5], new int[5])]);   // differs only at position 0
        using var lx = m.Forward(x); using var ly = m.Forward(y);
        Assert.True(lx.narrow(1, 2, 3).allclose(ly.narrow(1, 2, 3), rtol: 0, atol: 0));   // t ≥ 2 reads s ∈ {t − 1, t}
        Assert.False(lx.narrow(1, 1, 1).allclose(ly.narrow(1, 1, 1)));
        using var gx = global.Forward(x); using var gy = global.Forward(y);
        Assert.False(gx.narrow(1, 4, 1).allclose(gy.narrow(1, 4, 1)));                      // the same weights, global: it does
    }

    [Fact]
    public void Float32_forward_is_close_and_sites_have_the_expected_shape()
    {
        var config = ModelConfig.Create(8, 2, 4, 16, 2, 5, 7, 7, false);
        var w = ModelWeights.Random(config, 11);
        using var m32 = new Transformer(w, ScalarType.Float32);
        using var m64 = new Transformer(w, ScalarType.Float64);
        using var noGrad = no_grad();
        var (tokens, _) = Transformer.Batch([new Sequence([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])]);
        var sites = new List<Tensor>();
        using var a = m32.Forward(tokens, sites).to(ScalarType.Float64);
        using var b = m64.Forward(tokens);
        Assert.True(a.allclose(b, rtol: 1e-4, atol: 1e-4));
        Assert.Equal(5, sites.Count);
        Assert.All(sites, s => Assert.Equal([1L, 5, 8], s.shape));
        Assert.All(sites, s => Assert.Equal(ScalarType.Float32, s.dtype));
    }

    /// <summary>Forward builds its masks, rotary tables and grouped-query index once per module (for the longest length
    /// seen) and reads their prefix for shorter sequences: lengths in any order, each Forward inside its own dispose scope
    /// (as the training loop runs), give exactly a fresh module's logits, and the cache is rebuilt only to grow.</summary>
    [Theory]
    [InlineData("neo-like")]
    [InlineData("llama-like")]
    [InlineData("gptj-like")]
    [InlineData("gpt2-like")]
    public void Forward_reuses_its_length_tables_across_calls_and_scopes_bit_for_bit(string family)
    {
        var c = Families.Get(family) with { NCtx = 7 };
        var w = ModelWeights.Random(c.Validated(), 21, std: 0.5);
        using var cached = new Transformer(w, ScalarType.Float64);
        using var noGrad = no_grad();
        Assert.Equal(0, cached.CachedLength);
        foreach (var (T, expectCached) in new[] { (5, 5L), (2, 5L), (5, 5L), (7, 7L), (1, 7L), (6, 7L) })
        {
            var seq = new Sequence(Enumerable.Range(0, T).Select(t => (3 * t + T) % c.DVocab).ToArray(), new int[T]);
            double[] got, want;
            using (var scope = NewDisposeScope())
            {
                var (tokens, _) = Transformer.Batch([seq, seq]);
                got = cached.Forward(tokens).contiguous().data<double>().ToArray();
            }
            Assert.Equal(expectCached, cached.CachedLength);
            using (var fresh = new Transformer(w, ScalarType.Float64))
            using (var scope = NewDisposeScope())
            {
                var (tokens, _) = Transformer.Batch([seq, seq]);
                want = fresh.Forward(tokens).contiguous().data<double>().ToArray();
            }
            Assert.Equal(want, got);
        }
    }

    [Fact]
    public void Causal_mask_hides_later_tokens()
    {
        var config = ModelConfig.Create(8, 2, 4, 16, 2, 5, 7, 7, false);
        using var m = new Transformer(ModelWeights.Random(config, 12), ScalarType.Float64);
        using var noGrad = no_grad();
        var (x, _) = Transformer.Batch([new Sequence([1, 2, 3, 4, 5], new int[5])]);
        var (y, _) = Transformer.Batch([new Sequence([1, 2, 3, 6, 0], new int[5])]);
        using var lx = m.Forward(x); using var ly = m.Forward(y);
        Assert.True(lx.narrow(1, 0, 3).allclose(ly.narrow(1, 0, 3), rtol: 0, atol: 0));
        Assert.False(lx.narrow(1, 3, 1).allclose(ly.narrow(1, 3, 1)));
    }

    [Fact]
    public void Weights_survive_a_trip_through_TorchSharp()
    {
        var config = ModelConfig.Create(8, 2, 4, 16, 1, 5, 7, 7, false);
        var w = ModelWeights.Random(config, 13, dtype: "F64");
        using var m = new Transformer(w, ScalarType.Float64);
        var back = m.ToWeights("F64");
        foreach (var (name, t) in w.Tensors) Assert.Equal(t.Data, back[name].Data);
    }

    [Fact]
    public void Sequences_longer_than_n_ctx_are_refused()
    {
        var config = ModelConfig.Create(4, 1, 4, 4, 1, 3, 5, 5, false);
        using var m = new Transformer(ModelWeights.Random(config, 1));
        var (x, _) = Transformer.Batch([new Sequence([1, 2, 3, 4], new int[4])]);
        Assert.Throws<ArgumentException>(() => m.Forward(x));
    }
}

public class TrainingTests(ITestOutputHelper output)
{
    static readonly ModelConfig Config = ModelConfig.Create(16, 2, 8, 32, 1, 4, 12, 12, false);

    [Fact]
    public void Training_is_deterministic_for_a_seed_and_depends_on_it()
    {
        var task = new MaxOfKTask(12, 4);
        var o = new TrainOptions(Steps: 40, BatchSize: 32, WarmupSteps: 5, Seed: 3);
        using var a = Trainer.Train(task, Config, o);
        using var b = Trainer.Train(task, Config, o);
        using var c = Trainer.Train(task, Config, o with { Seed = 4 });
        var wa = a.ToWeights("F64"); var wb = b.ToWeights("F64"); var wc = c.ToWeights("F64");
        Assert.All(wa.Tensors, kv => Assert.Equal(kv.Value.Data, wb[kv.Key].Data));
        Assert.NotEqual(wa["embed.W_E"].Data, wc["embed.W_E"].Data);
    }

    [Fact]
    public void Training_lowers_the_loss_and_evaluation_agrees_with_the_reference()
    {
        var task = new MaxOfKTask(12, 4);
        var test = task.Generate(300, 9, "test");
        var o = new TrainOptions(Steps: 150, BatchSize: 64, WarmupSteps: 10, Seed: 1);
        var before = Evaluator.Evaluate(Trainer.Initialise(Config, 1), test);
        using var m = Trainer.Train(task, Config, o);
        var w = m.ToWeights("F32");
        var after = Evaluator.Evaluate(w, test);
        Assert.True(after.Loss < 0.5 * before.Loss, $"loss {before.Loss} → {after.Loss}");
        var reference = ReferenceForward.Evaluate(w, test);
        Assert.Equal(reference.Loss, after.Loss, 1e-10);
        Assert.Equal(reference.Accuracy, after.Accuracy);
        Assert.Equal(300, after.Positions);
    }

    [Fact]
    public void A_gpt2_like_model_trains_well_above_chance_on_max_of_k_and_its_norms_start_at_one_and_zero()
    {
        var config = (Config with { Normalization = NormKind.LN, Act = ActKind.GeluNew }).Validated();
        var init = Trainer.Initialise(config, 1);
        Assert.All(init["blocks.0.ln1.w"].Data, x => Assert.Equal(1.0, x));
        Assert.All(init["ln_final.b"].Data, x => Assert.Equal(0.0, x));
        Assert.All(init["blocks.0.attn.b_Q"].Data, x => Assert.Equal(0.0, x));
        var task = new MaxOfKTask(12, 4);
        var test = task.Generate(300, 9, "test");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var m = Trainer.Train(task, config, new TrainOptions(Steps: 200, BatchSize: 64, WarmupSteps: 10, Seed: 1));
        var w = m.ToWeights("F32");
        var after = Evaluator.Evaluate(w, test);
        output.WriteLine($"gpt2-like max-of-k (vocab 12, k 4), 200 steps: accuracy {after.Accuracy:P1}, loss {after.Loss:F4}, {sw.Elapsed.TotalSeconds:F1} s");
        Assert.True(after.Accuracy > 0.8, $"accuracy {after.Accuracy} (chance 1/12)");
        Assert.Equal(ReferenceForward.Evaluate(w, test).Loss, after.Loss, 1e-10);
    }

    [Fact]
    public void Grouped_query_gated_rotary_models_train_and_keep_their_shapes()
    {
        var config = (Config with { Normalization = NormKind.RMS, Act = ActKind.Silu, GatedMlp = true, Rotary = true, RotaryDim = 8, NKeyValueHeads = 1 }).Validated();
        using var m = Trainer.Train(new MaxOfKTask(12, 4), config, new TrainOptions(Steps: 30, BatchSize: 32, WarmupSteps: 5, Seed: 2));
        var w = m.ToWeights("F64");
        Assert.Equal([1, 16, 8], w["blocks.0.attn._W_K"].Shape);
        Assert.NotEqual(Trainer.Initialise(config, 2)["blocks.0.mlp.W_gate"].Data, w["blocks.0.mlp.W_gate"].Data);   // the gate is trained
    }

    [Fact]
    public void A_finite_task_holds_out_inputs_it_never_trains_on()
    {
        var task = new ModularAdditionTask(11);
        var split = DataSplit.For(task, new TrainOptions(Seed: 2, HeldOutFraction: 0.3));
        Assert.Equal(36, split.HeldOut.Count);
        Assert.Equal(121 - 36, split.TrainSet!.Count);
        var train = split.TrainSet.Select(s => (s.Tokens[0], s.Tokens[1])).ToHashSet();
        Assert.DoesNotContain(split.HeldOut.Sequences, s => train.Contains((s.Tokens[0], s.Tokens[1])));
        Assert.Equal(split.HeldOut.ContentHash(), DataSplit.For(task, new TrainOptions(Seed: 2, HeldOutFraction: 0.3)).HeldOut.ContentHash());
    }
}
