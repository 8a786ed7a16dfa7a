using System.Text.Json;
using Verifier.Core;
using static Verifier.Cli.Tests.CliTests;

namespace Verifier.Cli.Tests;

/// <summary>Test classes that train in-process run one at a time: two TorchSharp AdamW trainings on two threads of one
/// process were seen to fail inside libtorch (addcmul_ reading a Scalar), which a command, one per process, never does.</summary>
[CollectionDefinition(Name)]
public sealed class TrainingCollection { public const string Name = "in-process training"; }

/// <summary>train-model's architecture presets and options, and the early refusals of commands that handle only the basic model.</summary>
[Collection(TrainingCollection.Name)]
public sealed class ArchitectureCliTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-arch-cli-{Guid.NewGuid():N}");
    public ArchitectureCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string name) => Path.Combine(_dir, name);

    static readonly string[] Small = ["--task", "max-of-k", "--vocab", "10", "--k", "4", "--steps", "20", "--batch-size", "32",
        "--d-model", "16", "--d-head", "8", "--n-layers", "2"];

    /// <summary>Trains with Small plus --d-mlp 16, except for an attention-only model (which refuses --d-mlp).</summary>
    (int Code, string Out, string Err) Train(string name, params string[] extra) =>
        Run(["train-model", .. Small, .. (extra.Contains("--attn-only") ? Array.Empty<string>() : ["--d-mlp", "16"]), .. extra, "--out", P(name)]);

    [Theory]
    [InlineData("basic", "")]
    [InlineData("gpt2-like", "normalization_type LN|act_fn gelu_new")]
    [InlineData("pythia-like", "normalization_type LN|act_fn gelu|parallel_attn_mlp true|positional_embedding_type rotary")]
    [InlineData("llama-like", "normalization_type RMS|act_fn silu|gated_mlp true|positional_embedding_type rotary|n_key_value_heads 1")]
    [InlineData("neo-like", "normalization_type LN|act_fn gelu_new|use_local_attn true|use_attn_scale false")]
    public void Each_preset_writes_a_config_that_loads_round_trips_and_names_its_family(string arch, string features)
    {
        var r = Train(arch, "--arch", arch);
        Assert.True(r.Code == 0, r.Err);
        var w = ModelWeights.Load(P(arch));
        var c = w.Config;
        Assert.Equal(features.Length == 0 ? [] : features.Split('|'), c.Features());
        Assert.Equal(c, ModelConfig.Parse("again.json", c.ToJson()));
        Assert.Equal(File.ReadAllText(Path.Combine(P(arch), "config.json")), c.ToJson());
        if (arch == "pythia-like") { Assert.Equal(2, c.RotaryDim); Assert.False(c.RotaryAdjacentPairs); }
        if (arch == "llama-like") Assert.Equal(8, c.RotaryDim);
        if (arch == "neo-like") { Assert.Equal("global,local", c.AttnTypes); Assert.Equal(2, c.WindowSize); }
        // Initialised norms were w = 1, b = 0; after 20 steps they moved but stayed near.
        if (c.Normalization != NormKind.None) Assert.All(w["ln_final.w"].Data, x => Assert.InRange(x, 0.5, 1.5));

        var info = Run("info", "--model", P(arch));
        Assert.Equal(0, info.Code);
        Assert.Contains("architecture: " + (features.Length == 0 ? "basic" : string.Join(", ", c.Features())), info.Out);
        var e = Run("eval", "--model", P(arch), "--data", Path.Combine(P(arch), "test.jsonl"), "--reference", "--json");
        Assert.True(e.Code == 0, e.Err);
        using var doc = JsonDocument.Parse(e.Out);
        Assert.InRange(doc.RootElement.GetProperty("reference_max_logit_relative_difference").GetDouble(), 0, 1e-12);
        Assert.InRange(Math.Abs(doc.RootElement.GetProperty("reference_loss").GetDouble() - doc.RootElement.GetProperty("loss").GetDouble()), 0, 1e-12);
    }

    [Fact]
    public void Explicit_options_override_the_preset()
    {
        var r = Train("m", "--arch", "gpt2-like", "--act-fn", "relu", "--normalization", "RMS", "--positional-embedding", "rotary",
            "--rotary-dim", "4", "--rotary-adjacent-pairs", "--n-key-value-heads", "1", "--attn-types", "local,global", "--window-size", "3",
            "--scale-attn-by-inverse-layer-idx", "--attn-scale", "2.5");
        Assert.True(r.Code == 0, r.Err);
        var c = ModelConfig.Load(P("m"));
        Assert.Equal((NormKind.RMS, ActKind.Relu, true, 4, true, 1), (c.Normalization, c.Act, c.Rotary, c.RotaryDim, c.RotaryAdjacentPairs, c.NKeyValueHeads));
        Assert.Equal(("local,global", 3, true, 2.5), (c.AttnTypes, c.WindowSize, c.ScaleAttnByInverseLayerIdx, c.AttnScale));
        var back = Train("n", "--arch", "llama-like", "--gated-mlp", "false", "--positional-embedding", "standard", "--n-key-value-heads", "2");
        Assert.True(back.Code == 0, back.Err);
        var b = ModelConfig.Load(P("n"));
        Assert.Equal((false, false, (int?)null), (b.GatedMlp, b.Rotary, b.NKeyValueHeads));
        Assert.Equal(ActKind.Silu, b.Act);
    }

    [Theory]
    [InlineData(new[] { "--arch", "gpt2-like", "--act-fn", "bogus" }, "--act-fn")]
    [InlineData(new[] { "--n-heads", "4", "--n-key-value-heads", "3" }, "--n-key-value-heads")]
    [InlineData(new[] { "--arch", "gpt2-like", "--rotary-dim", "4" }, "--rotary-dim")]
    [InlineData(new[] { "--arch", "pythia-like", "--rotary-dim", "3" }, "--rotary-dim")]
    [InlineData(new[] { "--arch", "pythia-like", "--rotary-dim", "10" }, "--rotary-dim")]
    [InlineData(new[] { "--attn-only", "--gated-mlp" }, "--gated-mlp")]
    [InlineData(new[] { "--attn-only", "--act-fn", "gelu" }, "--act-fn")]
    [InlineData(new[] { "--attn-only", "--d-mlp", "32" }, "--d-mlp does not apply to an attention-only model")]
    [InlineData(new[] { "--window-size", "2" }, "--window-size")]
    [InlineData(new[] { "--attn-types", "local" }, "--attn-types")]
    [InlineData(new[] { "--attn-types", "global,sliding" }, "--attn-types")]
    [InlineData(new[] { "--arch", "neo-like", "--attn-scale", "2" }, "--attn-scale")]
    [InlineData(new[] { "--eps", "1e-6" }, "--eps")]
    [InlineData(new[] { "--arch", "llama-like", "--final-rms" }, "--final-rms")]
    [InlineData(new[] { "--normalization", "BN" }, "--normalization")]
    [InlineData(new[] { "--positional-embedding", "alibi" }, "--positional-embedding")]
    [InlineData(new[] { "--arch", "gpt3-like" }, "gpt3-like")]
    public void Meaningless_or_conflicting_architecture_options_are_refused_by_name(string[] extra, string named)
    {
        var r = Train("x", extra);
        Assert.Equal(2, r.Code);
        Assert.Contains(named, r.Err);
        Assert.False(Directory.Exists(P("x")));
    }

    [Fact]
    public void An_attention_only_model_trains_without_d_mlp_and_refuses_an_explicit_one_writing_nothing()
    {
        var r = Train("a", "--attn-only");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal((true, 0), (ModelWeights.Load(P("a")).Config.AttnOnly, ModelWeights.Load(P("a")).Config.DMlp));
        // The default --d-mlp is not given explicitly, so it is not refused; an explicit one (even the default value) is.
        var bad = Train("b", "--attn-only", "--d-mlp", "64");
        Assert.Equal(2, bad.Code);
        Assert.Contains("--d-mlp does not apply to an attention-only model", bad.Err);
        Assert.False(Directory.Exists(P("b")));
    }

    [Fact]
    public void Commands_that_assume_ReLU_interactions_refuse_a_gpt2_like_model_before_working_and_bench_bound_accepts_it()
    {
        Assert.Equal(0, Train("g", "--arch", "gpt2-like").Code);
        Assert.Equal(0, Run("make-data", "--task", "max-of-k", "--vocab", "10", "--k", "4", "--count", "50", "--out", P("d.jsonl")).Code);
        var pen = Run("train-crosscoder", "--model", P("g"), "--data", P("d.jsonl"), "--width", "8", "--k", "2", "--steps", "5",
            "--interaction-penalty", "0.1", "--out", P("cc"));
        Assert.Equal(4, pen.Code);
        Assert.Contains("'normalization_type'", pen.Err);
        var diff = Run("diff-models", "--model-a", P("g"), "--model-b", P("g"), "--data", P("d.jsonl"), "--steps", "5", "--no-record", "--out", P("diff"));
        Assert.Equal(4, diff.Code);
        Assert.Contains("diff-models", diff.Err);
        var sweep = Run("sweep-penalty", "--model", P("g"), "--data", P("d.jsonl"), "--bound-data", P("d.jsonl"), "--steps", "5", "--out", P("sweep"));
        Assert.Equal(4, sweep.Code);
        Assert.Contains("sweep-penalty", sweep.Err);
        // bench bound runs and checks brute force and trivial on it (every architecture since R3); exit 7 if any were rejected.
        var bench = Run("bench", "bound", "--model", P("g"), "--data", P("d.jsonl"), "--json");
        Assert.True(bench.Code == 0, bench.Err);
        // Without the penalty, a crosscoder trains and evaluates on it.
        var cc = Run("train-crosscoder", "--model", P("g"), "--data", P("d.jsonl"), "--width", "16", "--k", "4", "--steps", "60", "--batch-tokens", "64", "--json", "--out", P("cc"));
        Assert.True(cc.Code == 0, cc.Err);
        using var doc = JsonDocument.Parse(cc.Out);
        double fvu = doc.RootElement.GetProperty("metrics").GetProperty("evaluation").GetProperty("mean_fvu").GetDouble();
        Assert.InRange(fvu, 0, 0.99);
        Assert.False(Directory.Exists(P("diff")) || Directory.Exists(P("sweep")));
    }
}
