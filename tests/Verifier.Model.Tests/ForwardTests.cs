using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using TorchSharp;
using Verifier.Core;
using static TorchSharp.torch;

namespace Verifier.Model.Tests;

public class ForwardTests
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
        var w = ModelWeights.Random(config, seed, std: 0.3 + r.NextDouble());
        int B = 1 + r.NextInt(3), T = 1 + r.NextInt(config.NCtx);
        var seqs = Enumerable.Range(0, B).Select(_ =>
        {
            var t = Enumerable.Range(0, T).Select(_ => r.NextInt(config.DVocab)).ToArray();
            return new Sequence(t, t.Select(_ => 0).ToArray());
        }).ToList();

        using var model = new Transformer(w, ScalarType.Float64);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var sites = new List<Tensor>();
        var (tokens, _) = Transformer.Batch(seqs);
        var logits = model.Forward(tokens, sites).contiguous().data<double>().ToArray();
        if (sites.Count != config.SiteNames().Count) return false;
        var siteData = sites.Select(s => s.contiguous().data<double>().ToArray()).ToList();

        for (int b = 0; b < B; b++)
        {
            var reference = ReferenceForward.Run(w, seqs[b].Tokens);
            for (int t = 0; t < T; t++)
            {
                for (int v = 0; v < config.DVocabOut; v++)
                    if (RelErr(reference.Logits[t, v], logits[(b * T + t) * config.DVocabOut + v]) > 1e-9) return false;
                for (int s = 0; s < sites.Count; s++)
                    for (int i = 0; i < config.DModel; i++)
                        if (RelErr(reference.Sites[s][t, i], siteData[s][(b * T + t) * config.DModel + i]) > 1e-9) return false;
            }
        }
        return true;
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

public class TrainingTests
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
