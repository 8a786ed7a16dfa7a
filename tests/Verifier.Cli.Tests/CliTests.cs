using System.Text.Json;
using Verifier.Cli;
using Verifier.Core;

namespace Verifier.Cli.Tests;

/// <summary>The verifier command run in-process, as a user would run it: exit codes, stdout/stderr, files.</summary>
[Collection(TrainingCollection.Name)]
public sealed class CliTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-cli-{Guid.NewGuid():N}");

    public CliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string P(string name) => Path.Combine(_dir, name);

    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = VerifierCli.RunAsync(args, o, e).GetAwaiter().GetResult();
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>A small model trained quickly (a few seconds), shared by the tests that need one.</summary>
    string TrainSmall(string name = "model", params string[] extra)
    {
        var r = Run(["train-model", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--steps", "60", "--batch-size", "64",
            "--d-model", "8", "--d-head", "4", "--d-mlp", "16", "--out", P(name), .. extra]);
        Assert.True(r.Code == 0, r.Err);
        return P(name);
    }

    /// <summary>Writes d.jsonl (max-of-k, vocab 10, k 3) and trains a small crosscoder into cc/ on it.</summary>
    void TrainSmallCrosscoder(string model, int count, int steps, params string[] extra)
    {
        Assert.Equal(0, Run("make-data", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--count", count.ToString(), "--out", P("d.jsonl")).Code);
        Assert.Equal(0, Run(["train-crosscoder", "--model", model, "--data", P("d.jsonl"), "--width", "24", "--k", "3", "--steps", steps.ToString(),
            "--batch-tokens", "64", .. extra, "--out", P("cc")]).Code);
    }

    [Fact]
    public void Help_lists_every_command()
    {
        var r = Run("--help");
        Assert.Equal(0, r.Code);
        foreach (var c in new[] { "make-data", "train-model", "eval", "info", "train-crosscoder", "eval-crosscoder", "bound", "interactions", "suppress", "sweep-penalty", "diff-models", "adversarial", "cluster-features", "check", "runs", "frontier", "audit", "bench", "demo" }) Assert.Contains(c, r.Out);
        var t = Run("train-model", "--help");
        Assert.Contains("--task", t.Out);
        Assert.Contains("--json", t.Out);
    }

    [Theory]
    [InlineData(new string[0], "Run 'verifier --help'")]
    [InlineData(new[] { "eval", "--model" }, "Run 'verifier eval --help'")]
    [InlineData(new[] { "train-model", "--task", "max-of-k", "--out", "x", "--steps", "0" }, "--steps must be positive")]
    [InlineData(new[] { "make-data", "--task", "nonsense", "--out", "x" }, "nonsense")]
    [InlineData(new[] { "frobnicate" }, "frobnicate")]
    public void Usage_errors_exit_2_with_a_hint_on_stderr(string[] args, string expected)
    {
        var r = Run(args);
        Assert.Equal(ExitCodes.Usage, r.Code);
        Assert.Contains(expected, r.Err);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void Make_data_all_writes_a_descriptor_that_bound_and_check_accept()
    {
        string model = TrainSmall();
        var r = Run("make-data", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--all", "--out", P("all.json"), "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":10,\"k\":3,\"sequences\":1000}\n", File.ReadAllText(P("all.json")));
        Assert.Equal(1000, JsonDocument.Parse(r.Out).RootElement.GetProperty("sequences").GetInt32());
        var b = Run("bound", "--model", model, "--data", P("all.json"), "--strategy", "brute-force", "--out", P("t.json"), "--db", P("v.db"), "--json");
        Assert.True(b.Code == 0, b.Err);
        var c = Run("check", P("t.json"), "--model", model, "--data", P("all.json"), "--db", P("v.db"));
        Assert.True(c.Code == 0, c.Err + c.Out);
        Assert.Contains("accepted", c.Out);
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--task", "text", "--all"], "'text' is not enumerable"),
            (["--task", "max-of-k", "--vocab", "64", "--k", "6", "--all"], "more than int.MaxValue"),
            (["--task", "max-of-k", "--all", "--count", "5"], "--count does not apply with --all"),
            (["--task", "max-of-k", "--all", "--seed", "5"], "--seed does not apply with --all"),
        })
        {
            var e = Run(["make-data", .. args, "--out", P("x.json")]);
            Assert.Equal(ExitCodes.Usage, e.Code);
            Assert.Contains(expected, e.Err);
            Assert.False(File.Exists(P("x.json")));
        }
    }

    [Fact]
    public void An_option_that_does_not_apply_to_the_task_is_a_usage_error()
    {
        var r = Run("make-data", "--task", "max-of-k", "--p", "7", "--out", P("d.jsonl"));
        Assert.Equal(ExitCodes.Usage, r.Code);
        Assert.Contains("--p does not apply", r.Err);
        Assert.False(File.Exists(P("d.jsonl")));
    }

    [Fact]
    public void Train_then_eval_agrees_with_the_plain_reference_and_the_metrics_file()
    {
        string model = TrainSmall();
        foreach (var f in new[] { "config.json", "model.safetensors", "metrics.json", "test.jsonl" }) Assert.True(File.Exists(Path.Combine(model, f)), f);
        Assert.DoesNotContain(Directory.GetDirectories(_dir), d => Path.GetFileName(d).StartsWith('.'));

        var r = Run("eval", "--model", model, "--data", Path.Combine(model, "test.jsonl"), "--reference", "--json");
        Assert.Equal(0, r.Code);
        using var j = JsonDocument.Parse(r.Out);
        double loss = j.RootElement.GetProperty("loss").GetDouble();
        Assert.Equal(loss, j.RootElement.GetProperty("reference_loss").GetDouble(), 1e-10);
        Assert.Equal(j.RootElement.GetProperty("accuracy").GetDouble(), j.RootElement.GetProperty("reference_accuracy").GetDouble());
        Assert.Equal("float64", j.RootElement.GetProperty("dtype").GetString());

        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "metrics.json")));
        Assert.Equal(loss, m.RootElement.GetProperty("held_out_loss").GetDouble(), 1e-12);
        Assert.Equal(Hashing.Sha256File(Path.Combine(model, "model.safetensors")), m.RootElement.GetProperty("weights_sha256").GetString());

        var human = Run("eval", "--model", model, "--data", Path.Combine(model, "test.jsonl"));
        Assert.Contains("loss", human.Out);
        Assert.Contains("accuracy", human.Out);
    }

    [Fact]
    public void Training_twice_with_one_seed_gives_the_same_weights()
    {
        string a = TrainSmall("a", "--threads", "1"), b = TrainSmall("b", "--threads", "1");
        Assert.Equal(Hashing.Sha256File(Path.Combine(a, "model.safetensors")), Hashing.Sha256File(Path.Combine(b, "model.safetensors")));
    }

    [Fact]
    public void An_existing_output_is_kept_unless_forced()
    {
        Directory.CreateDirectory(P("model"));
        File.WriteAllText(P("model/notes.txt"), "mine");
        var r = Run("train-model", "--task", "max-of-k", "--steps", "5", "--out", P("model"));
        Assert.Equal(ExitCodes.OutputExists, r.Code);
        Assert.Contains("--force", r.Err);
        Assert.Equal("mine", File.ReadAllText(P("model/notes.txt")));

        File.WriteAllText(P("d.jsonl"), "x");
        Assert.Equal(ExitCodes.OutputExists, Run("make-data", "--task", "sort", "--out", P("d.jsonl")).Code);
        Assert.Equal(0, Run("make-data", "--task", "sort", "--out", P("d.jsonl"), "--force").Code);
    }

    [Fact]
    public void A_truncated_weights_file_is_refused_with_its_name()
    {
        string model = TrainSmall();
        string st = Path.Combine(model, "model.safetensors");
        var bytes = File.ReadAllBytes(st);
        File.WriteAllBytes(st, bytes[..^10]);
        var r = Run("eval", "--model", model, "--data", Path.Combine(model, "test.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, r.Code);
        Assert.Contains(st, r.Err);
        Assert.Contains("truncated", r.Err);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void NaN_weights_are_refused_naming_the_tensor()
    {
        string model = TrainSmall();
        var w = ModelWeights.Load(model);
        var tensors = w.Tensors.ToDictionary();
        var data = tensors["blocks.0.mlp.W_in"].Data.ToArray(); data[3] = double.NaN;
        tensors["blocks.0.mlp.W_in"] = tensors["blocks.0.mlp.W_in"] with { Data = data };
        SafetensorsFile.Write(Path.Combine(model, "model.safetensors"), tensors.Values);
        var r = Run("info", "--model", model);
        Assert.Equal(ExitCodes.InvalidInput, r.Code);
        Assert.Contains("'blocks.0.mlp.W_in'", r.Err);
        Assert.Contains("NaN", r.Err);
    }

    [Fact]
    public void Tokens_outside_the_vocabulary_are_refused_naming_the_line()
    {
        string model = TrainSmall();
        File.WriteAllText(P("bad.jsonl"), "{\"tokens\":[1,2,3],\"labels\":[-1,-1,3]}\n{\"tokens\":[1,2,30],\"labels\":[-1,-1,3]}\n");
        var r = Run("eval", "--model", model, "--data", P("bad.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, r.Code);
        Assert.Contains("bad.jsonl: line 2: tokens[2] = 30 is outside the model's vocabulary [0, 10)", r.Err);
    }

    [Fact]
    public void An_unsupported_normalisation_is_refused_by_name()
    {
        string model = TrainSmall();
        string cfg = Path.Combine(model, "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"normalization_type\": null", "\"normalization_type\": \"LNPost\""));
        var r = Run("info", "--model", model, "--json");
        Assert.Equal(ExitCodes.Unsupported, r.Code);
        Assert.Contains("'normalization_type'", r.Err);
    }

    [Fact]
    public void Make_data_writes_a_dataset_that_eval_accepts()
    {
        string model = TrainSmall();
        var r = Run("make-data", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--count", "50", "--seed", "4", "--out", P("d.jsonl"), "--json");
        Assert.Equal(0, r.Code);
        using var j = JsonDocument.Parse(r.Out);
        Assert.Equal(50, j.RootElement.GetProperty("sequences").GetInt32());
        Assert.Equal(50, File.ReadAllLines(P("d.jsonl")).Length);
        Assert.Equal(0, Run("eval", "--model", model, "--data", P("d.jsonl")).Code);
    }

    [Fact]
    public void Text_task_trains_on_a_user_file_and_saves_its_vocabulary()
    {
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 20)));
        var r = Run("train-model", "--task", "text", "--text", P("t.txt"), "--n-ctx", "8", "--steps", "20", "--batch-size", "16",
            "--d-model", "8", "--d-head", "4", "--d-mlp", "8", "--out", P("m"), "--json");
        Assert.True(r.Code == 0, r.Err);
        var vocab = JsonSerializer.Deserialize<string[]>(File.ReadAllText(P("m/vocabulary.json")))!;
        Assert.Equal(" .abcdefghijklmnopqrstuvwxyz".Length, vocab.Length);
    }

    [Fact]
    public void Demo_runs_end_to_end_and_prints_json()
    {
        var r = Run("demo", "--out", P("demo"), "--steps", "100", "--crosscoder-steps", "50", "--sequences", "500", "--width", "32",
            "--bound-sequences", "40", "--clusters", "1,4", "--budgets", "0.5", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        Assert.Equal(j.RootElement.GetProperty("held_out_loss").GetDouble(), j.RootElement.GetProperty("reference_loss").GetDouble(), 1e-10);
        Assert.True(File.Exists(P("demo/model/model.safetensors")));
        var cc = j.RootElement.GetProperty("crosscoder");
        Assert.Equal(3, cc.GetProperty("sites").GetArrayLength());
        Assert.Equal(8.0, cc.GetProperty("mean_l0").GetDouble(), 1e-9);
        Assert.True(File.Exists(P("demo/crosscoder/crosscoder.safetensors")));
        var bounds = j.RootElement.GetProperty("bounds").EnumerateArray().ToList();
        Assert.Equal(8, bounds.Count);   // brute force, exhaustive, tables, compact, mixed-0.5, clustered ×2, trivial
        foreach (var b in bounds)
        {
            Assert.True(b.GetProperty("b0").GetDouble() >= b.GetProperty("true_loss").GetDouble(), b.GetProperty("strategy").GetString());
            Assert.True(File.Exists(b.GetProperty("transcript").GetString()));
        }
        Assert.Contains(bounds, b => b.GetProperty("strategy").GetString() == "brute-force" && b.GetProperty("non_dominated").GetBoolean());
        // The store records where the transcripts are after the demo's directory is published, not the temporary.
        using (var store = new Verifier.Store.VerifierStore(P("demo/verifier.db")))
        {
            var runs = store.Runs();
            Assert.Equal(8, runs.Count);   // one run per bound
            foreach (var run in runs) Assert.True(File.Exists(run.TranscriptPath), run.TranscriptPath);
        }
        var f = Run("frontier", "--model", P("demo/model"), "--data", P("demo/bound-data.jsonl"), "--db", P("demo/verifier.db"), "--json");
        Assert.True(f.Code == 0, f.Err);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
    }

    [Fact]
    public void Bound_writes_a_transcript_and_refuses_what_it_cannot_do()
    {
        string model = TrainSmall();
        string data = Path.Combine(model, "test.jsonl");
        var r = Run("bound", "--model", model, "--data", data, "--strategy", "brute-force", "--out", P("t.json"), "--json", "--db", P("v.db"));
        Assert.True(r.Code == 0, r.Err);
        using (var j = JsonDocument.Parse(r.Out))
        {
            double b0 = j.RootElement.GetProperty("b0").GetDouble(), truth = j.RootElement.GetProperty("true_loss").GetDouble();
            Assert.InRange(b0 - truth, 0, 1e-6 * Math.Max(truth, 1e-3));
            Assert.True(j.RootElement.GetProperty("flops").GetInt64() > 0);
            Assert.True(j.RootElement.GetProperty("bits").GetDouble() > 0);
            Assert.Equal("brute-force", j.RootElement.GetProperty("strategy").GetString());
            Assert.Equal(P("t.json"), j.RootElement.GetProperty("transcript").GetString());
        }
        Assert.Equal(ExitCodes.OutputExists, Run("bound", "--model", model, "--data", data, "--strategy", "trivial", "--out", P("t.json"), "--db", P("v.db")).Code);

        var needs = Run("bound", "--model", model, "--data", data, "--strategy", "crosscoder-tables", "--out", P("u.json"));
        Assert.Equal(ExitCodes.Usage, needs.Code);
        Assert.Contains("--crosscoder", needs.Err);
        Assert.False(File.Exists(P("u.json")));

        var none = Run("interactions", P("t.json"));
        Assert.Equal(0, none.Code);
        Assert.Contains("no interaction terms", none.Out);
        File.WriteAllText(P("bad.json"), "{\"schema\": 3");
        var bad = Run("interactions", P("bad.json"));
        Assert.Equal(ExitCodes.InvalidInput, bad.Code);
        Assert.Contains("bad.json", bad.Err);
    }

    [Fact]
    public void Bound_check_runs_frontier_and_audit_work_together_and_tampering_is_caught()
    {
        string model = TrainSmall();
        string data = Path.Combine(model, "test.jsonl"), db = P("v.db");
        foreach (var s in new[] { "brute-force", "trivial" })
        {
            Assert.Equal(0, Run("bound", "--model", model, "--data", data, "--strategy", s, "--out", P($"{s}.json"), "--db", db).Code);
            var c = Run("check", P($"{s}.json"), "--model", model, "--data", data, "--db", db, "--json");
            Assert.True(c.Code == 0, c.Err + c.Out);
            using var j = JsonDocument.Parse(c.Out);
            Assert.Equal("accepted", j.RootElement.GetProperty("verdict").GetString());
        }
        // A transcript whose claim was lowered is rejected with the step, the lemma and both numbers; exit 7.
        var text = File.ReadAllText(P("brute-force.json"));
        var m = System.Text.RegularExpressions.Regex.Match(text, "\"loss_sum\":([0-9.eE+-]+)");
        double claimed = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        File.WriteAllText(P("low.json"), text.Replace(m.Value, $"\"loss_sum\":{(claimed * 0.9).ToString("R", System.Globalization.CultureInfo.InvariantCulture)}"));
        var bad = Run("check", P("low.json"), "--model", model, "--data", data, "--db", db);
        Assert.Equal(ExitCodes.Rejected, bad.Code);
        Assert.Contains("rejected at step 0 (BFB)", bad.Out);
        Assert.Contains("below the certified", bad.Out);

        var runs = Run("runs", "--db", db, "--json");
        using (var j = JsonDocument.Parse(runs.Out)) Assert.Equal(2, j.RootElement.GetArrayLength());
        var f = Run("frontier", "--model", model, "--data", data, "--db", db, "--plot", P("f.png"));
        Assert.True(f.Code == 0, f.Err);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(P("f.png"))[..4]);
        Assert.Equal(0, Run("frontier", "--model", model, "--data", data, "--db", db, "--plot", P("f.svg")).Code);
        Assert.Contains("<svg", File.ReadAllText(P("f.svg")));
        Assert.Equal(0, Run("audit", "verify", "--db", db).Code);

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        using (var raw = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={db};Pooling=False"))
        {
            raw.Open();
            using var c = raw.CreateCommand();
            c.CommandText = "DROP TRIGGER audit_no_update; UPDATE audit SET payload = replace(payload, 'accepted', 'rejected') WHERE action = 'check';";
            c.ExecuteNonQuery();
        }
        var audit = Run("audit", "verify", "--db", db);
        Assert.Equal(ExitCodes.AuditBroken, audit.Code);
        Assert.Contains("broken at entry 2", audit.Out);
    }

    [Fact]
    public void Writing_commands_print_the_head_and_frontier_refuses_a_store_whose_verdict_was_forged()
    {
        string model = TrainSmall();
        string data = Path.Combine(model, "test.jsonl"), db = P("v.db");
        var b = Run("bound", "--model", model, "--data", data, "--strategy", "brute-force", "--out", P("t.json"), "--db", db, "--json");
        Assert.True(b.Code == 0, b.Err);
        using (var j = JsonDocument.Parse(b.Out)) Assert.StartsWith("1:", j.RootElement.GetProperty("store_head").GetString());
        Assert.Contains("store: audit head 1:", b.Err);
        // The lowered claim is rejected, and the rejection is recorded: entry 2.
        var text = File.ReadAllText(P("t.json"));
        var m = System.Text.RegularExpressions.Regex.Match(text, "\"loss_sum\":([0-9.eE+-]+)");
        double claimed = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        File.WriteAllText(P("low.json"), text.Replace(m.Value, $"\"loss_sum\":{(claimed * 0.5).ToString("R", System.Globalization.CultureInfo.InvariantCulture)}"));
        Assert.Equal(0, Run("bound", "--model", model, "--data", data, "--strategy", "trivial", "--out", P("tr.json"), "--db", db).Code);
        var c = Run("check", P("low.json"), "--model", model, "--data", data, "--db", db, "--json");
        Assert.Equal(ExitCodes.Rejected, c.Code);
        string head;
        using (var j = JsonDocument.Parse(c.Out)) head = j.RootElement.GetProperty("store_head").GetString()!;
        Assert.StartsWith("3:", head);
        Assert.Equal(0, Run("audit", "verify", "--db", db, "--head", head).Code);
        Assert.Equal(0, Run("frontier", "--model", model, "--data", data, "--db", db).Code);

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        using (var raw = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={db};Pooling=False"))
        {
            raw.Open();
            using var cmd = raw.CreateCommand();
            cmd.CommandText = "DROP TRIGGER checks_no_update; UPDATE checks SET verdict = 'accepted' WHERE id = 1;";
            cmd.ExecuteNonQuery();
        }
        var f = Run("frontier", "--model", model, "--data", data, "--db", db, "--json");
        Assert.Equal(ExitCodes.AuditBroken, f.Code);
        Assert.Equal("", f.Out);
        Assert.Contains("checks id 1 column verdict is \"accepted\" but audit entry 3 recorded \"rejected\"", f.Err);
        Assert.Equal(ExitCodes.AuditBroken, Run("audit", "verify", "--db", db, "--head", head).Code);
    }

    [Fact]
    public void Several_verifier_processes_writing_one_store_lose_nothing()
    {
        string model = TrainSmall();
        string data = Path.Combine(model, "test.jsonl"), db = P("shared.db");
        string exe = Path.Combine(AppContext.BaseDirectory, "verifier.dll");
        var procs = Enumerable.Range(0, 5).Select(i => System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            ArgumentList = { exe, "bound", "--model", model, "--data", data, "--strategy", "trivial", "--out", P($"t{i}.json"), "--db", db, "--no-true-loss" },
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!).ToList();
        foreach (var p in procs)
        {
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, err);
        }
        var runs = Run("runs", "--db", db, "--json");
        using var j = JsonDocument.Parse(runs.Out);
        Assert.Equal(5, j.RootElement.GetArrayLength());
        var audit = Run("audit", "verify", "--db", db, "--json");
        Assert.Equal(0, audit.Code);
        using var a = JsonDocument.Parse(audit.Out);
        Assert.Equal(5, a.RootElement.GetProperty("entries").GetInt32());
    }

    [Fact]
    public void Interactions_suppression_and_the_penalty_sweep_run_from_the_command_line()
    {
        string model = TrainSmall();
        TrainSmallCrosscoder(model, 200, 30, "--interaction-penalty", "0.1");
        var i = Run("interactions", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"), "--report", P("rep"), "--db", P("v.db"), "--json");
        Assert.True(i.Code == 0, i.Err);
        using (var j = JsonDocument.Parse(i.Out))
        {
            Assert.True(j.RootElement.GetProperty("dominant_share").GetDouble() is > 0 and <= 1);
            Assert.Contains(j.RootElement.GetProperty("validation").EnumerateArray(), v => v.GetProperty("metric").GetString() == "relu-seed");
        }
        Assert.Contains("# Feature interactions", File.ReadAllText(P("rep/report.md")));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(P("rep/heatmap.png"))[..4]);

        var cl = Run("cluster-features", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"), "--db", P("v.db"), "--json");
        Assert.True(cl.Code == 0, cl.Err);
        using (var j = JsonDocument.Parse(cl.Out)) Assert.True(j.RootElement.GetProperty("by_interaction").GetArrayLength() > 0);

        var s = Run("suppress", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"), "--db", P("v.db"), "--json");
        Assert.True(s.Code == 0, s.Err);
        using (var j = JsonDocument.Parse(s.Out))
            Assert.Equal(5, j.RootElement.GetProperty("schemes").GetArrayLength());
        Assert.Equal(0, Run("audit", "verify", "--db", P("v.db")).Code);

        var w = Run("sweep-penalty", "--model", model, "--data", P("d.jsonl"), "--bound-data", P("d.jsonl"), "--lambdas", "0,1", "--width", "16",
            "--k", "2", "--steps", "20", "--out", P("sweep"), "--json");
        Assert.True(w.Code == 0, w.Err);
        using (var j = JsonDocument.Parse(w.Out))
        {
            Assert.Equal(2, j.RootElement.GetProperty("rows").GetArrayLength());
            var points = j.RootElement.GetProperty("rows")[0].GetProperty("points");
            Assert.Equal(3, points.GetArrayLength());
            Assert.Equal("tables", points[0].GetProperty("strategy").GetString());
        }
        Assert.True(File.Exists(P("sweep/sweep.png")));
        Assert.True(File.Exists(P("sweep/sweep-frontiers.png")));
        Assert.Contains("| λ |", File.ReadAllText(P("sweep/sweep.md")));
    }

    [Fact]
    public void Diff_models_trains_a_joint_crosscoder_ranks_tokens_and_rescores_with_it()
    {
        string a = TrainSmall("a");
        var b = Run("train-model", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--trigger", "4", "--init", a, "--steps", "30", "--batch-size", "64",
            "--d-model", "8", "--d-head", "4", "--d-mlp", "16", "--out", P("b"));
        Assert.True(b.Code == 0, b.Err);
        Assert.Equal(0, Run("make-data", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--trigger", "4", "--count", "200", "--out", P("d.jsonl")).Code);
        var r = Run("diff-models", "--model-a", a, "--model-b", P("b"), "--data", P("d.jsonl"), "--width", "16", "--k", "2", "--steps", "20",
            "--trigger", "4", "--out", P("diff"), "--db", P("v.db"), "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        Assert.Equal(10, j.RootElement.GetProperty("tokens").GetArrayLength());
        int rank = j.RootElement.GetProperty("trigger_rank").GetInt32();
        Assert.InRange(rank, 1, 10);
        var tokens = j.RootElement.GetProperty("tokens").EnumerateArray().ToList();
        Assert.Equal(4, tokens[rank - 1].GetProperty("token").GetInt32());
        var t = tokens.Select(x => x.GetProperty("t")).Where(x => x.ValueKind == JsonValueKind.Number).Select(x => Math.Abs(x.GetDouble())).ToList();
        Assert.Equal(t.OrderByDescending(x => x), t);                                     // ranked by |t|
        // Each model's accuracy with and without the trigger: A was never taught the backdoor.
        var bdA = j.RootElement.GetProperty("backdoor_a");
        Assert.Equal(4, bdA.GetProperty("trigger").GetInt32());
        Assert.Equal(200, bdA.GetProperty("triggered_sequences").GetInt32() + bdA.GetProperty("clean_sequences").GetInt32());
        Assert.True(File.Exists(P("diff/diff.png")));
        // Re-scoring with the saved joint crosscoder reproduces the ranking without training.
        var again = Run("diff-models", "--model-a", a, "--model-b", P("b"), "--data", P("d.jsonl"), "--crosscoder", P("diff"),
            "--trigger", "4", "--out", P("diff2"), "--no-record", "--json");
        Assert.True(again.Code == 0, again.Err);
        using (var j2 = JsonDocument.Parse(again.Out)) Assert.Equal(rank, j2.RootElement.GetProperty("trigger_rank").GetInt32());
        // A crosscoder over one model's sites is not a joint one: refused, naming the field.
        Assert.Equal(0, Run("train-crosscoder", "--model", a, "--data", P("d.jsonl"), "--width", "8", "--k", "2", "--steps", "5", "--batch-tokens", "64", "--out", P("single")).Code);
        var wrong = Run("diff-models", "--model-a", a, "--model-b", P("b"), "--data", P("d.jsonl"), "--crosscoder", P("single"),
            "--out", P("diff3"), "--no-record");
        Assert.Equal(ExitCodes.InvalidInput, wrong.Code);
        Assert.Contains("sites", wrong.Err);
        Assert.False(Directory.Exists(P("diff3")));
        var mismatch = Run("train-model", "--task", "max-of-k", "--init", a, "--steps", "5", "--out", P("c"));
        Assert.Equal(ExitCodes.Mismatch, mismatch.Code);
    }

    [Fact]
    public void Adversarial_search_runs_and_reports_each_pair()
    {
        string model = TrainSmall();
        TrainSmallCrosscoder(model, 300, 30);
        var r = Run("adversarial", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"),
            "--pairs", "2", "--budget", "30", "--no-record", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        Assert.True(j.RootElement.GetProperty("pairs").GetArrayLength() <= 2);
        var wrongTask = Run("adversarial", "--task", "sort", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"), "--no-record");
        Assert.Equal(ExitCodes.Usage, wrongTask.Code);
        Assert.Contains("does not fit", wrongTask.Err);
    }

    [Fact]
    public void Tables_transcripts_carry_ranked_interactions()
    {
        string model = TrainSmall();
        TrainSmallCrosscoder(model, 300, 40);
        var r = Run("bound", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"), "--strategy", "crosscoder-tables", "--out", P("t.json"), "--no-record");
        Assert.True(r.Code == 0, r.Err);
        var i = Run("interactions", P("t.json"), "--json", "--top", "3");
        Assert.True(i.Code == 0, i.Err);
        using var j = JsonDocument.Parse(i.Out);
        Assert.True(j.RootElement.GetProperty("attention-pair").GetArrayLength() is > 0 and <= 3);
        var text = Run("interactions", P("t.json"));
        Assert.Contains("Attention feature pairs", text.Out);
    }

    [Fact]
    public void Train_crosscoder_then_eval_it_and_refuse_it_on_another_model()
    {
        string model = TrainSmall();
        Assert.Equal(0, Run("make-data", "--task", "max-of-k", "--vocab", "10", "--k", "3", "--count", "300", "--out", P("d.jsonl")).Code);
        var r = Run("train-crosscoder", "--model", model, "--data", P("d.jsonl"), "--width", "24", "--k", "3", "--steps", "40",
            "--batch-tokens", "64", "--sites", "blocks.0.hook_resid_pre,blocks.0.hook_resid_post", "--out", P("cc"), "--json");
        Assert.True(r.Code == 0, r.Err);
        using (var j = JsonDocument.Parse(r.Out))
        {
            var sites = j.RootElement.GetProperty("metrics").GetProperty("evaluation").GetProperty("sites");
            Assert.Equal(2, sites.GetArrayLength());
        }
        using (var m = JsonDocument.Parse(File.ReadAllText(P("cc/metrics.json"))))
            Assert.Equal(Hashing.Sha256File(Path.Combine(model, "model.safetensors")), m.RootElement.GetProperty("model_sha256").GetString());

        var e = Run("eval-crosscoder", "--model", model, "--crosscoder", P("cc"), "--data", P("d.jsonl"));
        Assert.True(e.Code == 0, e.Err);
        Assert.Contains("blocks.0.hook_resid_post", e.Out);

        string other = TrainSmall("other", "--seed", "9");
        var refused = Run("eval-crosscoder", "--model", other, "--crosscoder", P("cc"), "--data", P("d.jsonl"));
        Assert.Equal(ExitCodes.Mismatch, refused.Code);
        Assert.Contains("--allow-model-mismatch", refused.Err);
        Assert.Equal(0, Run("eval-crosscoder", "--model", other, "--crosscoder", P("cc"), "--data", P("d.jsonl"), "--allow-model-mismatch").Code);

        var badSite = Run("train-crosscoder", "--model", model, "--data", P("d.jsonl"), "--sites", "blocks.7.hook_resid_post", "--out", P("cc2"));
        Assert.Equal(ExitCodes.Usage, badSite.Code);
        Assert.Contains("not a residual site", badSite.Err);
        Assert.False(Directory.Exists(P("cc2")));
    }
}
