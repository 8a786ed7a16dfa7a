using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Core.Tests;

/// <summary>The TransformerLens families in the config and the reference forward: parsing and round trips, tensor names,
/// hand-computed cases per option, and that every implemented field changes the function.</summary>
public class ArchitectureTests
{
    static ModelConfig Basic(int layers = 1, bool attnOnly = false, int nCtx = 5) => ModelConfig.Create(8, 2, 4, 12, layers, nCtx, 7, 7, attnOnly);

    /// <summary>One configuration per family a researcher has on disk (tests/Families, shared with the Model and Cli tests).</summary>
    public static IEnumerable<object[]> Families() => Verifier.TestSupport.Families.Names();

    public static IReadOnlyList<(string Name, ModelConfig Config)> FamilyTable() => Verifier.TestSupport.Families.Table;

    static ModelConfig Family(string name) => FamilyTable().Single(f => f.Name == name).Config.Validated();

    [Theory]
    [MemberData(nameof(Families))]
    public void Every_family_round_trips_through_config_json_and_its_weights_load(string family)
    {
        var c = Family(family);
        Assert.Equal(c, ModelConfig.Parse("again.json", c.ToJson()));
        Assert.False(c.IsBasic);
        string dir = Path.Combine(Path.GetTempPath(), "verifier-arch-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var w = ModelWeights.Random(c, seed: 1);
            w.SaveInto(dir);
            var back = ModelWeights.Load(dir);
            Assert.Equal(c, back.Config);
            var a = ReferenceForward.Run(w, [1, 2, 3, 4]).Logits; var b = ReferenceForward.Run(back, [1, 2, 3, 4]).Logits;
            for (int t = 0; t < 4; t++) for (int v = 0; v < 7; v++) Assert.Equal(a[t, v], b[t, v], 5);   // F32 on disk
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Tensor_names_follow_TransformerLens()
    {
        var names = Family("llama-like").ParameterShapes().Select(p => p.Name).ToHashSet();
        Assert.Contains("blocks.0.ln1.w", names); Assert.DoesNotContain("blocks.0.ln1.b", names);      // RMS: gain only
        Assert.Contains("blocks.1.attn._W_K", names); Assert.Contains("blocks.1.attn._b_V", names);    // GQA
        Assert.DoesNotContain("blocks.1.attn.W_K", names);
        Assert.Contains("blocks.0.mlp.W_gate", names);
        Assert.DoesNotContain("pos_embed.W_pos", names);                                                // rotary
        Assert.Contains("ln_final.w", names);
        var gpt2 = Family("gpt2-like").ParameterShapes().ToDictionary(p => p.Name, p => p.Shape);
        Assert.Equal([8], gpt2["blocks.1.ln2.b"]); Assert.Equal([8], gpt2["ln_final.b"]); Assert.Contains("pos_embed.W_pos", gpt2.Keys);
        Assert.DoesNotContain(Family("folded-lnpre").ParameterShapes(), p => p.Name.Contains(".ln") || p.Name.StartsWith("ln_final"));
        var final = Family("final-rms").ParameterShapes().Select(p => p.Name).ToHashSet();
        Assert.Contains("blocks.0.ln1.b", final); Assert.Contains("ln_final.w", final); Assert.DoesNotContain("ln_final.b", final);
        Assert.Equal(["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], Family("pythia-like").SiteNames());
    }

    [Fact]
    public void A_GPT_Neo_config_as_TransformerLens_writes_it_parses()
    {
        const string neo = """
        {"d_model": 8, "n_heads": 2, "d_head": 4, "d_mlp": 12, "n_layers": 2, "n_ctx": 5, "d_vocab": 7, "act_fn": "gelu_new",
         "normalization_type": "LN", "eps": 1e-05, "use_attn_scale": false, "use_local_attn": true, "window_size": 2,
         "attn_types": ["global", "local"], "positional_embedding_type": "standard", "original_architecture": "GPTNeoForCausalLM",
         "rotary_dim": null, "rotary_base": 10000, "final_rms": false, "gated_mlp": false, "parallel_attn_mlp": false}
        """;
        var c = ModelConfig.Parse("neo/config.json", neo);
        Assert.Equal(Family("neo-like"), c);
        Assert.Equal(0, c.FirstKey(0, 4)); Assert.Equal(3, c.FirstKey(1, 4)); Assert.Equal(0, c.FirstKey(1, 0));
    }

    [Theory]
    [InlineData("""{"rotary_dim": 3}""", "rotary_dim")]
    [InlineData("""{"rotary_dim": 6}""", "rotary_dim")]
    [InlineData("""{"n_key_value_heads": 3}""", "n_key_value_heads")]
    [InlineData("""{"use_local_attn": true, "attn_types": ["global"], "window_size": 2}""", "attn_types")]
    [InlineData("""{"use_local_attn": true, "attn_types": ["local", "sliding"], "window_size": 2}""", "attn_types")]
    [InlineData("""{"use_local_attn": true, "attn_types": ["local", "global"]}""", "window_size")]
    [InlineData("""{"normalization_type": "LN", "eps": 0}""", "eps")]
    [InlineData("""{"normalization_type": "LN", "eps": "tiny"}""", "eps")]
    public void Inconsistent_architecture_fields_are_refused_by_name(string patch, string field)
    {
        var o = JsonNode.Parse(Basic(2).ToJson())!.AsObject();
        foreach (var (k, v) in JsonNode.Parse(patch)!.AsObject()) o[k] = v?.DeepClone();
        if (o["rotary_dim"] is not null) o["positional_embedding_type"] = "rotary";
        var e = Assert.ThrowsAny<VerifierException>(() => ModelConfig.Parse("m/config.json", o.ToJsonString()));
        Assert.Contains($"'{field}'", e.Message);
    }

    [Fact]
    public void LayerNorm_and_RMSNorm_match_hand_computation()
    {
        var c = Basic() with { Normalization = NormKind.LN, Eps = 0.25 };
        var w = ModelWeights.Random(c, 2);
        var h = new double[1, 8];
        for (int i = 0; i < 8; i++) h[0, i] = i + 1;                 // mean 4.5, mean square of the centred 5.25
        var g = w["blocks.0.ln1.w"].Data; var b = w["blocks.0.ln1.b"].Data;
        var y = ReferenceForward.Normalize(w, "blocks.0.ln1.", NormKind.LN, h);
        for (int i = 0; i < 8; i++) Assert.Equal((i + 1 - 4.5) / Math.Sqrt(5.25 + 0.25) * g[i] + b[i], y[0, i], 14);
        var pre = ReferenceForward.Normalize(w, "", NormKind.LNPre, h);
        for (int i = 0; i < 8; i++) Assert.Equal((i + 1 - 4.5) / Math.Sqrt(5.5), pre[0, i], 14);
        var rms = ReferenceForward.Normalize(w, "", NormKind.RMSPre, h);   // mean square 204/8 = 25.5
        for (int i = 0; i < 8; i++) Assert.Equal((i + 1) / Math.Sqrt(25.5 + 0.25), rms[0, i], 14);
    }

    [Fact]
    public void Activations_match_known_values()
    {
        Close(0.5204998778130465, Activation.Erf(0.5));
        Close(0.8427007929497149, Activation.Erf(1));
        Close(0.9953222650189527, Activation.Erf(2));
        Close(-0.9999992569016276, Activation.Erf(-3.5));
        Assert.True(Math.Abs(Activation.Erfc(4) / 1.541725790028002e-08 - 1) < 1e-14);
        Close(0.8413447460685429, Activation.Apply(ActKind.Gelu, 1));
        Close(-0.15865525393145707, Activation.Apply(ActKind.Gelu, -1));
        Close(0.8411919906082768, Activation.Apply(ActKind.GeluNew, 1));
        Assert.Equal(Activation.Apply(ActKind.GeluNew, 0.7), Activation.Apply(ActKind.GeluPytorchTanh, 0.7));
        Assert.True(Math.Abs(Activation.Apply(ActKind.GeluNew, 1) - Activation.Apply(ActKind.GeluFast, 1)) < 1e-9);
        Close(0.7310585786300049, Activation.Apply(ActKind.Silu, 1));
        Assert.Equal(0.0, Activation.Apply(ActKind.Relu, -2));
    }

    static void Close(double expected, double actual) =>
        Assert.True(Math.Abs(actual - expected) <= 4e-16 * Math.Abs(expected), $"{actual:R} is not within 4e-16 relative of {expected:R}");

    static ModelWeights Copy(ModelWeights w, ModelConfig c, Func<string, double[], double[]>? edit = null) =>
        new(c, c.ParameterShapes().ToDictionary(p => p.Name, p =>
        {
            var data = w.Tensors.TryGetValue(p.Name, out var t) ? t.Data : Fill(p);
            return new NamedTensor(p.Name, p.Shape, edit?.Invoke(p.Name, data.ToArray()) ?? data, "F64");
        }));

    /// <summary>A tensor the source model lacks: gains 1.1, others a fixed pattern.</summary>
    static double[] Fill((string Name, int[] Shape) p)
    {
        int n = p.Shape.Aggregate(1, (a, b) => a * b);
        return Enumerable.Range(0, n).Select(i => p.Name.EndsWith(".w") ? 1.1 : 0.3 * Math.Sin(i + p.Name.Length)).ToArray();
    }

    static double MaxDiff(double[,] a, double[,] b)
    {
        double m = 0;
        for (int i = 0; i < a.GetLength(0); i++) for (int j = 0; j < a.GetLength(1); j++) m = Math.Max(m, Math.Abs(a[i, j] - b[i, j]));
        return m;
    }

    static readonly int[] Tokens = [3, 1, 4, 1, 5];

    [Fact]
    public void Grouped_query_attention_with_one_kv_head_equals_every_head_sharing_it()
    {
        var gqa = Basic() with { NKeyValueHeads = 1 };
        var w = ModelWeights.Random(gqa, 3, std: 0.4);
        var plain = Basic();
        var copy = Copy(w, plain, null);
        var tensors = copy.Tensors.ToDictionary();
        foreach (var (src, dst, per) in new[] { ("_W_K", "W_K", 8 * 4), ("_W_V", "W_V", 8 * 4), ("_b_K", "b_K", 4), ("_b_V", "b_V", 4) })
        {
            var kv = w["blocks.0.attn." + src].Data;
            tensors["blocks.0.attn." + dst] = new NamedTensor("blocks.0.attn." + dst, plain.ParameterShapes().Single(p => p.Name == "blocks.0.attn." + dst).Shape,
                kv.Concat(kv).ToArray(), "F64");
            Assert.Equal(per, kv.Length);
        }
        var shared = new ModelWeights(plain, tensors);
        Assert.True(MaxDiff(ReferenceForward.Run(w, Tokens).Logits, ReferenceForward.Run(shared, Tokens).Logits) < 1e-13);
    }

    [Fact]
    public void Local_attention_window_one_makes_a_position_blind_to_earlier_tokens_and_a_wide_window_is_global()
    {
        var local = Basic(1, attnOnly: true) with { AttnTypes = "local", WindowSize = 1 };
        var w = ModelWeights.Random(local, 4, std: 0.5);
        var a = ReferenceForward.Run(w, [3, 1, 4, 1, 5]).Logits; var b = ReferenceForward.Run(w, [6, 0, 4, 1, 5]).Logits;
        for (int v = 0; v < 7; v++) { Assert.Equal(a[4, v], b[4, v]); Assert.Equal(a[2, v], b[2, v]); }
        Assert.NotEqual(a[0, 0], b[0, 0]);
        var wide = Copy(w, local with { WindowSize = 5 });
        var global = Copy(w, Basic(1, attnOnly: true));
        Assert.Equal(0, MaxDiff(ReferenceForward.Run(wide, Tokens).Logits, ReferenceForward.Run(global, Tokens).Logits));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Rotary_scores_depend_only_on_the_offset_between_positions(bool adjacent)
    {
        // One token repeated: with rotary positions and no W_pos, q and k before rotation are the same at every position,
        // so the score (t, s) equals (t + 1, s + 1); the first position's attention output is v itself.
        var c = Basic(1, attnOnly: true, nCtx: 6) with { Rotary = true, RotaryDim = 4, RotaryAdjacentPairs = adjacent, RotaryBase = 7 };
        var w = ModelWeights.Random(c, 5, std: 0.6);
        var h0 = new double[6, 8];
        for (int t = 0; t < 6; t++) for (int i = 0; i < 8; i++) h0[t, i] = w["embed.W_E"].Data[2 * 8 + i];
        var q = Project(w, "W_Q", "b_Q", h0); var k = Project(w, "W_K", "b_K", h0);
        Rotate(c, q); Rotate(c, k);
        double Score(int t, int s) { double d = 0; for (int e = 0; e < 4; e++) d += q[t, e] * k[s, e]; return d; }
        Assert.Equal(Score(3, 1), Score(4, 2), 12);
        Assert.Equal(Score(5, 0), Score(6 - 1, 0), 12);
        Assert.NotEqual(Score(3, 1), Score(3, 2), 6);
        // Rotating is what the forward does: the same model with rotary_dim 0 changes the logits.
        var noRot = Copy(w, c with { Rotary = false, RotaryDim = 0 }, null);
        Assert.True(MaxDiff(ReferenceForward.Run(w, [2, 2, 2, 2]).Logits, ReferenceForward.Run(noRot, [2, 2, 2, 2]).Logits) > 1e-6);
    }

    /// <summary>q or k of head 0 for every position, then the rotation written out independently of the forward:
    /// GPT-J rotates (2i, 2i+1), GPT-NeoX (i, i + rd/2), both by θ = t / base^(2i/rd).</summary>
    static double[,] Project(ModelWeights w, string W, string b, double[,] h)
    {
        var m = w["blocks.0.attn." + W].Data; var bias = w["blocks.0.attn." + b].Data;
        var r = new double[h.GetLength(0), 4];
        for (int t = 0; t < h.GetLength(0); t++)
            for (int e = 0; e < 4; e++) { double s = bias[e]; for (int i = 0; i < 8; i++) s += h[t, i] * m[i * 4 + e]; r[t, e] = s; }
        return r;
    }

    static void Rotate(ModelConfig c, double[,] x)
    {
        for (int t = 0; t < x.GetLength(0); t++)
            for (int i = 0; i < 2; i++)
            {
                double th = t / Math.Pow(c.RotaryBase, 2.0 * i / 4);
                int a = c.RotaryAdjacentPairs ? 2 * i : i, b = c.RotaryAdjacentPairs ? 2 * i + 1 : i + 2;
                double xa = x[t, a], xb = x[t, b];
                x[t, a] = xa * Math.Cos(th) - xb * Math.Sin(th); x[t, b] = xb * Math.Cos(th) + xa * Math.Sin(th);
            }
    }

    [Fact]
    public void Attention_scale_options_equal_rescaled_queries()
    {
        var inv = Basic(2) with { ScaleAttnByInverseLayerIdx = true };
        var w = ModelWeights.Random(inv, 6, std: 0.5);
        var rescaled = Copy(w, Basic(2), (name, d) => name.StartsWith("blocks.1.attn.W_Q") || name.StartsWith("blocks.1.attn.b_Q") ? d.Select(x => x / 2).ToArray() : d);
        Assert.True(MaxDiff(ReferenceForward.Run(w, Tokens).Logits, ReferenceForward.Run(rescaled, Tokens).Logits) < 1e-12);

        var noScale = Copy(w, Basic(2) with { UseAttnScale = false });
        var byRoot = Copy(w, Basic(2), (name, d) => name.Contains("attn.W_Q") || name.Contains("attn.b_Q") ? d.Select(x => x * 2).ToArray() : d);   // scores not divided by √d_head = 2
        Assert.True(MaxDiff(ReferenceForward.Run(noScale, Tokens).Logits, ReferenceForward.Run(byRoot, Tokens).Logits) < 1e-12);

        var three = Copy(w, Basic(2) with { AttnScale = 3.0 });
        var byThree = Copy(w, Basic(2), (name, d) => name.Contains("attn.W_Q") || name.Contains("attn.b_Q") ? d.Select(x => x * 2 / 3).ToArray() : d);
        Assert.True(MaxDiff(ReferenceForward.Run(three, Tokens).Logits, ReferenceForward.Run(byThree, Tokens).Logits) < 1e-12);
    }

    [Fact]
    public void Gated_and_parallel_MLPs_match_hand_computation()
    {
        // One position, attention output zeroed (W_O = 0, b_O = 0): logits = (h + MLP(h)) W_U + b_U with h = W_E[x] + W_pos[0].
        foreach (bool parallel in new[] { false, true })
        {
            var c = Basic(1, nCtx: 1) with { GatedMlp = true, Act = ActKind.Silu, ParallelAttnMlp = parallel };
            var w = Copy(ModelWeights.Random(c, 7, std: 0.5), c, (name, d) => name.EndsWith("attn.W_O") || name.EndsWith("attn.b_O") ? new double[d.Length] : d);
            var h = new double[8];
            for (int i = 0; i < 8; i++) h[i] = w["embed.W_E"].Data[5 * 8 + i] + w["pos_embed.W_pos"].Data[i];
            var Wg = w["blocks.0.mlp.W_gate"].Data; var Wi = w["blocks.0.mlp.W_in"].Data; var bi = w["blocks.0.mlp.b_in"].Data;
            var Wo = w["blocks.0.mlp.W_out"].Data; var bo = w["blocks.0.mlp.b_out"].Data;
            var post = new double[12];
            for (int j = 0; j < 12; j++)
            {
                double g = 0, l = 0;
                for (int i = 0; i < 8; i++) { g += h[i] * Wg[i * 12 + j]; l += h[i] * Wi[i * 12 + j]; }
                post[j] = g / (1 + Math.Exp(-g)) * l + bi[j];
            }
            var res = new double[8];
            for (int i = 0; i < 8; i++) { double s = bo[i]; for (int j = 0; j < 12; j++) s += post[j] * Wo[j * 8 + i]; res[i] = h[i] + s; }
            var logits = ReferenceForward.Run(w, [5]).Logits;
            for (int v = 0; v < 7; v++)
            {
                double z = w["unembed.b_U"].Data[v];
                for (int i = 0; i < 8; i++) z += res[i] * w["unembed.W_U"].Data[i * 7 + v];
                Assert.Equal(z, logits[0, v], 12);
            }
        }
    }

    /// <summary>Each implemented field, changed alone on a model whose other tensors are kept, changes the logits.</summary>
    [Theory]
    [InlineData("normalization_type")] [InlineData("final_rms")] [InlineData("eps")] [InlineData("act_fn")]
    [InlineData("gated_mlp")] [InlineData("parallel_attn_mlp")] [InlineData("positional_embedding_type")]
    [InlineData("rotary_dim")] [InlineData("rotary_base")] [InlineData("rotary_adjacent_pairs")] [InlineData("n_key_value_heads")]
    [InlineData("use_local_attn")] [InlineData("window_size")] [InlineData("use_attn_scale")] [InlineData("attn_scale")]
    [InlineData("scale_attn_by_inverse_layer_idx")]
    public void Every_implemented_field_changes_the_logits(string field)
    {
        var baseline = Basic(2) with { Normalization = NormKind.LN, Act = ActKind.Gelu, Rotary = true, RotaryDim = 4, AttnTypes = "global,local", WindowSize = 3 };
        ModelConfig changed = field switch
        {
            "normalization_type" => baseline with { Normalization = NormKind.RMS },
            "final_rms" => baseline with { FinalRms = true },
            "eps" => baseline with { Eps = 0.5 },
            "act_fn" => baseline with { Act = ActKind.GeluNew },
            "gated_mlp" => baseline with { GatedMlp = true },
            "parallel_attn_mlp" => baseline with { ParallelAttnMlp = true },
            "positional_embedding_type" => baseline with { Rotary = false, RotaryDim = 0 },
            "rotary_dim" => baseline with { RotaryDim = 2 },
            "rotary_base" => baseline with { RotaryBase = 3 },
            "rotary_adjacent_pairs" => baseline with { RotaryAdjacentPairs = true },
            "n_key_value_heads" => baseline with { NKeyValueHeads = 1 },
            "use_local_attn" => baseline with { AttnTypes = null, WindowSize = 0 },
            "window_size" => baseline with { WindowSize = 1 },
            "use_attn_scale" => baseline with { UseAttnScale = false },
            "attn_scale" => baseline with { AttnScale = 5.0 },
            "scale_attn_by_inverse_layer_idx" => baseline with { ScaleAttnByInverseLayerIdx = true },
            _ => throw new ArgumentException(field),
        };
        var w = ModelWeights.Random(baseline.Validated(), 8, std: 0.4);
        var v = Copy(w, changed.Validated());
        Assert.True(MaxDiff(ReferenceForward.Run(w, Tokens).Logits, ReferenceForward.Run(v, Tokens).Logits) > 1e-9, field);
        // And the field survives config.json: the reloaded configuration is the changed one.
        Assert.Equal(changed, ModelConfig.Parse("c.json", changed.ToJson()));
    }
}
