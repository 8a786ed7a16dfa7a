using System.Text.Json.Nodes;
using Verifier.Cli;
using Verifier.Core;

namespace Verifier.Cli.Tests;

/// <summary>Issue 10 cases 3, 4, 5, 7 through the command line: exit codes and messages.</summary>
public sealed class IoTrustCliTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-io-cli-{Guid.NewGuid():N}");
    public IoTrustCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string n) => Path.Combine(_dir, n);
    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    /// <summary>A random model (no training) and a dataset for it, written with the project's own writers.</summary>
    (string Model, string Data) Small(Func<Dictionary<string, NamedTensor>, Dictionary<string, NamedTensor>>? edit = null)
    {
        var c = ModelConfig.Create(4, 1, 4, 8, 1, 3, 5, 5, attnOnly: false);
        var w = ModelWeights.Random(c, 1, dtype: "F64");
        var t = w.Tensors.ToDictionary(p => p.Key, p => p.Value);
        if (edit is not null) t = edit(t);
        Directory.CreateDirectory(P("m"));
        new ModelWeights(c, t).SaveInto(P("m"));
        new TokenDataset([new Sequence([1, 2, 3], [-1, -1, 3]), new Sequence([4, 0], [-1, 4])]).Save(P("d.jsonl"));
        return (P("m"), P("d.jsonl"));
    }

    [Fact]
    public void A_soft_capped_model_is_refused_with_exit_4_naming_field_and_value()
    {
        var (m, d) = Small();
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(m, "config.json")))!.AsObject();
        o["output_logits_soft_cap"] = 30.0;
        File.WriteAllText(Path.Combine(m, "config.json"), o.ToJsonString());
        var r = Run("bound", "--model", m, "--data", d, "--strategy", "brute-force", "--out", P("t.json"), "--no-record");
        Assert.Equal(ExitCodes.Unsupported, r.Code);
        Assert.Contains($"{Path.Combine(m, "config.json")}: field 'output_logits_soft_cap': 30 is not supported", r.Err);
        Assert.False(File.Exists(P("t.json")));
    }

    [Fact]
    public void Escape_sequences_from_a_file_reach_the_terminal_escaped()
    {
        var (m, _) = Small();
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(m, "config.json")))!.AsObject();
        o["\u001b[1A\u001b[2K\u202Everdict: accepted"] = 1;
        File.WriteAllText(Path.Combine(m, "config.json"), o.ToJsonString());
        var r = Run("info", "--model", m);
        Assert.Equal(ExitCodes.Unsupported, r.Code);
        Assert.Contains("\\u001b[1A\\u001b[2K\\u202everdict: accepted", r.Err);
        Assert.DoesNotContain('\u001b', r.Err);
        Assert.DoesNotContain('\u202e', r.Err);
    }

    [Fact]
    public void A_duplicate_key_in_the_dataset_is_exit_3()
    {
        var (m, _) = Small();
        File.WriteAllText(P("dup.jsonl"), "{\"tokens\":[1],\"labels\":[1],\"tokens\":[2]}\n");
        var r = Run("eval", "--model", m, "--data", P("dup.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, r.Code);
        Assert.Contains($"{P("dup.jsonl")}: line 1, byte 27: duplicate key 'tokens'", r.Err);
    }

    [Fact]
    public void Eval_and_bound_of_an_overflowing_model_exit_9_naming_the_model_without_NaN_or_stack_trace()
    {
        var (m, d) = Small(t =>
        {
            var wu = t["unembed.W_U"];
            t["unembed.W_U"] = new NamedTensor(wu.Name, wu.Shape, wu.Data.Select((_, i) => i % 5 % 2 == 0 ? 3e307 : -3e307).ToArray(), "F64");
            var we = t["embed.W_E"];
            t["embed.W_E"] = new NamedTensor(we.Name, we.Shape, we.Data.Select(_ => 1e3).ToArray(), "F64");
            return t;
        });
        string weights = Path.Combine(m, "model.safetensors");
        var e = Run("eval", "--model", m, "--data", d, "--json");
        Assert.Equal(ExitCodes.Numeric, e.Code);
        Assert.Contains($"error: {weights}: ", e.Err);
        Assert.Contains("overflows", e.Err);
        Assert.DoesNotContain("NaN", e.Out);
        foreach (var s in new[] { "brute-force", "trivial" })
        {
            var b = Run("bound", "--model", m, "--data", d, "--strategy", s, "--out", P($"{s}.json"), "--no-record");
            Assert.Equal(ExitCodes.Numeric, b.Code);
            Assert.StartsWith($"error: {weights}: interval forward pass: ", b.Err);
            Assert.DoesNotContain("   at ", b.Err);
            Assert.False(File.Exists(P($"{s}.json")));
        }
    }

    [Fact]
    public void Force_never_replaces_an_input_the_store_or_a_device()
    {
        var (m, d) = Small();
        string db = P("v.db");
        Assert.Equal(0, Run("bound", "--model", m, "--data", d, "--strategy", "trivial", "--out", P("t.json"), "--db", db).Code);
        File.CreateSymbolicLink(P("alias.jsonl"), d);
        string dataBefore = File.ReadAllText(d);
        foreach (var (target, what) in new[] { (d, "is an input"), (P("alias.jsonl"), "is an input"), (db, "is the store"), (db + "-wal", "is the store's -wal"),
                                                (Path.Combine(m, "model.safetensors"), "is an input"), ("/dev/null", "character device") })
        {
            var r = Run("bound", "--model", m, "--data", d, "--strategy", "trivial", "--out", target, "--db", db, "--force");
            Assert.True(r.Code == ExitCodes.Usage, $"{target}: {r.Code} {r.Err}");
            Assert.Contains(what, r.Err);
        }
        Assert.Equal(dataBefore, File.ReadAllText(d));
        Assert.False(File.Exists("/dev/null") && new FileInfo("/dev/null").Length > 0);
        var mk = Run("make-data", "--task", "text", "--text", d, "--out", d, "--force");
        Assert.Equal(ExitCodes.Usage, mk.Code);
        Assert.Equal(dataBefore, File.ReadAllText(d));
        var tc = Run("train-crosscoder", "--model", m, "--data", d, "--out", _dir, "--force", "--steps", "1");
        Assert.Equal(ExitCodes.Usage, tc.Code);
        Assert.Contains("contains", tc.Err);
        Assert.True(File.Exists(d));
        var fr = Run("frontier", "--model", m, "--data", d, "--db", db, "--plot", db);
        Assert.Equal(ExitCodes.Usage, fr.Code);
    }
}
