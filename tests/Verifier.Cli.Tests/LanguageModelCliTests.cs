using System.Text.Json;
using Verifier.Core;
using static Verifier.Cli.Tests.CliTests;

namespace Verifier.Cli.Tests;

/// <summary>train-model --data and demo --arch gpt2-like: a language model on BPE windows, end to end.</summary>
[Collection(TrainingCollection.Name)]
public sealed class LanguageModelCliTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-lm-cli-{Guid.NewGuid():N}");
    public LanguageModelCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string name) => Path.Combine(_dir, name);

    void Text()
    {
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n", 40)));
        var r = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "8", "--vocab-top", "24", "--out", P("w.jsonl"));
        Assert.True(r.Code == 0, r.Err);
    }

    [Fact]
    public void Train_model_on_a_dataset_file_takes_d_vocab_from_its_vocab_map_and_holds_out_windows()
    {
        Text();
        var r = Run("train-model", "--data", P("w.jsonl"), "--arch", "gpt2-like", "--steps", "20", "--batch-size", "8", "--d-model", "16", "--d-head", "8", "--d-mlp", "16", "--json", "--out", P("m"));
        Assert.True(r.Code == 0, r.Err);
        var c = ModelWeights.Load(P("m")).Config;
        Assert.Equal(24, c.DVocab);
        Assert.Equal(8, c.NCtx);
        Assert.Contains("normalization_type LN", c.Features());
        int all = File.ReadAllLines(P("w.jsonl")).Length, held = File.ReadAllLines(P("m/test.jsonl")).Length;
        Assert.Equal((int)Math.Round(all * 0.3), held);
        // Every held-out window is one of the file's, and eval runs on it.
        var lines = File.ReadAllLines(P("w.jsonl")).ToHashSet();
        Assert.All(File.ReadAllLines(P("m/test.jsonl")), l => Assert.Contains(l, lines));
        Assert.Equal(0, Run("eval", "--model", P("m"), "--data", P("m/test.jsonl")).Code);
    }

    [Theory]
    [InlineData("--task", "max-of-k")]
    [InlineData("--k", "3")]
    [InlineData("--n-ctx", "4")]
    public void Train_model_data_refuses_task_options_beside_it(string option, string value)
    {
        Text();
        var r = Run("train-model", "--data", P("w.jsonl"), option, value, "--steps", "2", "--out", P("m"));
        Assert.Equal(2, r.Code);
        Assert.Contains(option, r.Err);
        Assert.False(Directory.Exists(P("m")));
    }

    [Fact]
    public void Train_model_data_refuses_ids_outside_the_vocabulary_and_a_missing_vocabulary()
    {
        Text();
        var r = Run("train-model", "--data", P("w.jsonl"), "--vocab", "10", "--steps", "2", "--out", P("m"));
        Assert.Equal(3, r.Code);
        Assert.Contains("outside the vocabulary [0, 10)", r.Err);
        File.Delete(P("w.jsonl.vocab.json"));
        r = Run("train-model", "--data", P("w.jsonl"), "--steps", "2", "--out", P("m"));
        Assert.Equal(2, r.Code);
        Assert.Contains("--vocab", r.Err);
        Assert.False(Directory.Exists(P("m")));
    }

    [Fact]
    public void Train_model_data_refuses_a_negative_id_by_name()
    {
        File.WriteAllText(P("n.jsonl"), "{\"tokens\":[-3,2,1],\"labels\":[2,1,0]}\n{\"tokens\":[1,2,3],\"labels\":[2,3,-1]}\n");
        var r = Run("train-model", "--data", P("n.jsonl"), "--vocab", "5", "--steps", "2", "--out", P("m"));
        Assert.Equal(3, r.Code);
        Assert.Contains("tokens[0]", r.Err);
        Assert.False(Directory.Exists(P("m")));
    }

    [Fact]
    public void Demo_gpt2_like_trains_bounds_and_checks_a_language_model()
    {
        var r = Run("demo", "--arch", "gpt2-like", "--out", P("demo"), "--steps", "30", "--crosscoder-steps", "20", "--sequences", "200",
            "--width", "32", "--bound-sequences", "4", "--clusters", "1,4", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var bounds = doc.RootElement.GetProperty("bounds").EnumerateArray().ToList();
        Assert.Equal(["brute-force", "crosscoder-tables", "clustered-1", "clustered-4", "trivial"], bounds.Select(b => b.GetProperty("strategy").GetString()!));
        Assert.All(bounds, b => Assert.Equal("accepted", b.GetProperty("verdict").GetString()));
        double trueLoss = bounds[0].GetProperty("true_loss").GetDouble();
        Assert.All(bounds, b => Assert.True(b.GetProperty("b0").GetDouble() >= trueLoss));
        Assert.InRange(bounds[0].GetProperty("b0").GetDouble() - trueLoss, 0, 1e-6 * Math.Max(1, trueLoss));
        Assert.Contains("normalization_type LN", doc.RootElement.GetProperty("architecture").EnumerateArray().Select(x => x.GetString()));
        Assert.True(File.Exists(P("demo/frontier.png")) && File.Exists(P("demo/text.txt")) && File.Exists(P("demo/crosscoder/crosscoder.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(RepoRoot(), "data", "shakespeare.txt")), File.ReadAllBytes(P("demo/text.txt")));
    }

    [Fact]
    public void Demo_refuses_options_that_do_not_apply_to_its_architecture()
    {
        var a = Run("demo", "--arch", "gpt2-like", "--budgets", "0.5", "--out", P("d1"));
        Assert.Equal(2, a.Code); Assert.Contains("--budgets", a.Err);
        var b = Run("demo", "--text", P("none.txt"), "--out", P("d2"));
        Assert.Equal(2, b.Code); Assert.Contains("--text", b.Err);
        Assert.False(Directory.Exists(P("d1")) || Directory.Exists(P("d2")));
    }

    static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Verifier.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("the repository root (Verifier.sln) is not above the test binaries");
    }
}
