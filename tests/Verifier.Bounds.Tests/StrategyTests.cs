using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

public class StrategyTests
{
    [Property(MaxTest = 25)]
    public bool Every_strategy_bounds_the_float64_loss_from_above_on_random_models(ulong seed, bool attnOnly, bool twoLayers)
    {
        using var f = new RandomWorld(seed, attnOnly, twoLayers ? 2 : 1);
        double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
        var cc = f.RandomCrosscoder(seed + 1, 6, 2);
        var results = new[]
        {
            f.Bound(Strategies.BruteForce), f.Bound(Strategies.Trivial), f.Bound(Strategies.CrosscoderExhaustive, cc),
            f.Bound(Strategies.CrosscoderTables, cc), f.Bound(Strategies.Clustered, cc), f.Bound(Strategies.Clustered, cc, clusters: 3),
        };
        // The float64 reference is within 1e-12 of the exact loss on these sizes; the bounds must not dip below it.
        return results.All(r => r.B0 >= truth - 1e-12 * Math.Max(1, truth) && double.IsFinite(r.B0));
    }

    [Property(MaxTest = 25)]
    public bool Brute_force_is_within_1e_minus_6_of_the_true_loss(ulong seed)
    {
        using var f = new RandomWorld(seed, layers: 2);
        double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
        var r = f.Bound(Strategies.BruteForce);
        return r.B0 >= truth && r.B0 - truth <= 1e-6 * Math.Max(truth, 1e-3);
    }

    [Property(MaxTest = 15)]
    public bool A_perfect_crosscoder_gives_the_true_loss_up_to_rounding(ulong seed, bool attnOnly, bool tables)
    {
        // Tables linearise the MLP (T2), so they are exact only on a ReLU-free path: attention-only models.
        if (tables) attnOnly = true;
        using var f = new RandomWorld(seed, attnOnly);
        double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
        var r = f.Bound(tables ? Strategies.CrosscoderTables : Strategies.CrosscoderExhaustive, f.IdentityCrosscoder());
        return r.B0 >= truth - 1e-12 && r.B0 - truth <= 1e-6 * Math.Max(truth, 1e-3);
    }

    [Property(MaxTest = 10)]
    public bool One_cluster_per_sequence_is_brute_force_in_boxes(ulong seed)
    {
        using var f = new RandomWorld(seed);
        double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
        // Distinct sequences each in their own cluster: point boxes, so the bound is tight up to rounding.
        var distinct = f.Data.Sequences.Select(s => string.Join(",", s.Tokens)).Distinct().Count() == f.Data.Count;
        var r = f.Bound(Strategies.Clustered, f.IdentityCrosscoder(), clusters: f.Data.Count);
        return r.B0 >= truth - 1e-12 && (!distinct || r.B0 - truth <= 1e-6 * Math.Max(truth, 1e-3));
    }

    [Fact]
    public void The_linearisation_identity_holds_exactly()
    {
        // ReLU(c + s) = ReLU(c) + 1[c>0]·s + E with E = max(0, −(c+s)) if c > 0 else max(0, c + s), over exact rationals.
        var r = new Rng(3);
        for (int i = 0; i < 10_000; i++)
        {
            double c = (r.NextDouble() - 0.5) * 8, s = (r.NextDouble() - 0.5) * 8;
            var (C, S) = (Rational.Of(c), Rational.Of(s));
            var sum = C + S;
            Rational Relu(Rational x) => x.P.Sign > 0 ? x : new Rational(0, 1);
            var e = c > 0 ? Relu(new Rational(-sum.P, sum.Q)) : Relu(sum);
            var rhs = Relu(C) + (c > 0 ? S : new Rational(0, 1)) + e;
            var lhs = Relu(sum);
            Assert.True(lhs <= rhs && rhs <= lhs, $"c={c} s={s}");
            // And the enclosure used by T2 contains it.
            var E = Iv.Relu(Iv.Point(c) + Iv.Point(s)) - Iv.Relu(Iv.Point(c)) - (c > 0 ? Iv.Point(s) : Iv.Zero);
            Assert.True(Rational.Of(E.Lo) <= e && e <= Rational.Of(E.Hi));
        }
    }

    [Fact]
    public void Tables_reproduce_the_exhaustive_nominal_values_to_rounding()
    {
        using var f = new RandomWorld(21);
        var cc = f.RandomCrosscoder(4, 7, 3);
        var c = f.Model.Config;
        var sites = c.SiteNames();
        var tab = Tables.Build(f.Model, cc, Enumerable.Range(0, sites.Count).ToArray());
        var enc = new PlainCrosscoder(cc, sites);
        var model = new IntervalModel(f.Model);
        foreach (var seq in f.Data.Sequences)
        {
            var feats = enc.Encode(f.Model, seq.Tokens);
            var a0 = enc.Decode(feats, 0);
            var exhaustive = model.Attention(0, a0);
            for (int h = 0; h < c.NHeads; h++)
                for (int t = 0; t < seq.Tokens.Length; t++)
                {
                    var q = Tables.Combine(feats[t], tab.Attn[0].Q[h], tab.Attn[0].Q0[h]);
                    for (int e = 0; e < c.DHead; e++)
                    {
                        var x = exhaustive.Q[h][t][e];
                        Assert.True(Math.Abs(0.5 * (q[e].Lo + q[e].Hi) - 0.5 * (x.Lo + x.Hi)) <= 1e-12 * Math.Max(1, x.Mag) + q[e].Width + x.Width);
                        Assert.True(q[e].Lo <= x.Hi && x.Lo <= q[e].Hi, "the two enclosures of the same real value must intersect");
                    }
                }
        }
    }

    [Fact]
    public void Brute_force_FLOPs_equal_an_independent_count_of_one_forward_pass_per_sequence_with_the_last_layer_at_labelled_positions()
    {
        using var f = new RandomWorld(17, layers: 2);
        var c = f.Model.Config;
        long expected = 0;
        foreach (var s in f.Data.Sequences)
        {
            // Counted position by position, head by head, from the definition of the model (BOUNDS.md §1).
            int T = s.Tokens.Length;
            long n = 0;
            for (int t = 0; t < T; t++) n += c.DModel;                                            // W_E[x_t] + W_pos[t]
            for (int l = 0; l < c.NLayers; l++)
            {
                // The last layer's outputs are read only at labelled positions: there it computes only k and v elsewhere.
                bool Needed(int t) => l < c.NLayers - 1 || s.Labels[t] >= 0;
                for (int h = 0; h < c.NHeads; h++)
                    for (int t = 0; t < T; t++)
                    {
                        if (!Needed(t)) { n += 2 * (2L * c.DModel * c.DHead + c.DHead); continue; }   // k, v only
                        n += 3 * (2L * c.DModel * c.DHead + c.DHead);                          // q, k, v with biases
                        int keys = t + 1;
                        n += keys * (2L * c.DHead + 1);                                        // scores and scale
                        n += 4L * keys + 1;                                                    // softmax
                        n += keys * 2L * c.DHead;                                              // z
                        n += 2L * c.DHead * c.DModel;                                          // z W_O
                    }
                int rows = Enumerable.Range(0, T).Count(Needed);
                n += rows * (long)c.DModel;                                                    // b_O
                n += rows * (long)c.DModel;                                                    // residual
                if (!c.AttnOnly) n += rows * (4L * c.DModel * c.DMlp + 2L * c.DMlp + 2L * c.DModel);
            }
            n += s.LabelledCount * (2L * c.DModel * c.DVocabOut + c.DVocabOut + 3L * c.DVocabOut + 1);
            expected += n;
        }
        var r = f.Bound(Strategies.BruteForce);
        Assert.Equal(expected + f.Data.Count + 1, r.Cost.Flops);   // + MEAN: one addition per sequence and a division
        Assert.Equal(0, r.Cost.FlopsDatasetIndependent);
    }

    [Fact]
    public void The_transcript_is_well_formed()
    {
        using var f = new RandomWorld(5);
        var cc = f.RandomCrosscoder(3, 5, 2);
        foreach (var s in Strategies.All) CheckTranscript(f.Bound(s, Strategies.NeedsCrosscoder(s) ? cc : null, clusters: 2));
    }

    internal static readonly Json.Schema.JsonSchema Schema = Json.Schema.JsonSchema.FromText(File.ReadAllText(Path.Combine(ProofsDir, "..", "spec", "transcript.schema.json")));

    static void CheckTranscript(BoundResult r)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(r.Transcript));
        var verdict = Schema.Evaluate(doc.RootElement, new Json.Schema.EvaluationOptions { OutputFormat = Json.Schema.OutputFormat.List });
        Assert.True(verdict.IsValid, $"{r.Strategy}: transcript does not match spec/transcript.schema.json: " +
            string.Join("; ", (verdict.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")).Take(5)));
        var root = doc.RootElement;
        Assert.Equal("verifier-transcript/1", root.GetProperty("schema").GetString());
        var roles = Strategies.NeedsCrosscoder(r.Strategy)
            ? new[] { "model_weights", "model_config", "dataset", "crosscoder_weights", "crosscoder_config" }
            : new[] { "model_weights", "model_config", "dataset" };
        foreach (var role in roles)
            Assert.Equal(64, root.GetProperty("artefacts").GetProperty(role).GetProperty("sha256").GetString()!.Length);
        int i = 0;
        foreach (var step in root.GetProperty("steps").EnumerateArray())
        {
            Assert.Equal(i, step.GetProperty("id").GetInt32());
            Assert.All(step.GetProperty("inputs").EnumerateArray(), x => Assert.InRange(x.GetInt32(), 0, i - 1));
            string lemma = step.GetProperty("lemma").GetString()!;
            Assert.True(LemmaFiles.TryGetValue(lemma, out var file) && File.Exists(Path.Combine(ProofsDir, file)), $"lemma {lemma} is not registered in proofs/README.md");
            i++;
        }
        Assert.Equal(r.B0, root.GetProperty("result").GetProperty("b0").GetDouble());
        Assert.Equal(i - 1, root.GetProperty("result").GetProperty("final_step").GetInt32());
        Assert.Equal(r.Cost.Flops, root.GetProperty("cost").GetProperty("flops").GetInt64());
    }

    /// <summary>The lemma registry: the table in proofs/README.md, "| ID[, ID…] | `file` | … |".</summary>
    static readonly Dictionary<string, string> LemmaFiles = File.ReadAllLines(Path.Combine(ProofsDir, "README.md"))
        .Where(l => l.StartsWith("| ") && l.Contains('`'))
        .SelectMany(l =>
        {
            var cells = l.Split('|', StringSplitOptions.TrimEntries);
            return cells[1].Split(',', StringSplitOptions.TrimEntries).Select(id => (id, file: cells[2].Trim('`')));
        })
        .ToDictionary(x => x.id, x => x.file);

    static string ProofsDir
    {
        get
        {
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d is not null && !Directory.Exists(Path.Combine(d.FullName, "proofs"))) d = d.Parent;
            return Path.Combine(d!.FullName, "proofs");
        }
    }

    [Fact]
    public void The_schema_is_not_vacuous()
    {
        using var f = new RandomWorld(6);
        var text = File.ReadAllText(f.Bound(Strategies.BruteForce).Transcript);
        bool Valid(string t) { using var d = JsonDocument.Parse(t); return Schema.Evaluate(d.RootElement).IsValid; }
        Assert.True(Valid(text));
        Assert.False(Valid(text.Replace("\"lemma\":\"BFB\"", "\"lemma\":\"L99\"")));
        Assert.False(Valid(text.Replace("\"schema\":\"verifier-transcript/1\"", "\"schema\":\"verifier-transcript/1\",\"extra\":1")));
        Assert.False(Valid(text.Replace("\"dataset_dependent\":true", "\"dataset_dependent\":\"yes\"")));
    }

    [Fact]
    public void The_same_inputs_give_the_same_transcript_bytes()
    {
        using var f = new RandomWorld(8);
        var cc = f.RandomCrosscoder(1, 5, 2);
        var a = File.ReadAllBytes(f.Bound(Strategies.CrosscoderExhaustive, cc).Transcript);
        var b = File.ReadAllBytes(f.Bound(Strategies.CrosscoderExhaustive, cc).Transcript);
        Assert.Equal(a, b);
    }
}
