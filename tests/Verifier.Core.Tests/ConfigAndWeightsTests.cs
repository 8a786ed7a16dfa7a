using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Core.Tests;

public class ConfigAndWeightsTests
{
    /// <summary>A config.json as TransformerLens writes it for a LayerNorm-free ReLU model (fields abridged).</summary>
    const string TransformerLensConfig = """
    {"n_layers": 2, "d_model": 16, "n_ctx": 7, "d_head": 4, "model_name": "custom", "n_heads": 4, "d_mlp": 32,
     "act_fn": "relu", "d_vocab": 11, "eps": 1e-05, "use_attn_result": false, "use_attn_scale": true, "attn_scale": 2.0,
     "use_local_attn": false, "original_architecture": null, "normalization_type": null, "device": "cpu",
     "attention_dir": "causal", "attn_only": false, "seed": null, "initializer_range": 0.2, "init_weights": true,
     "scale_attn_by_inverse_layer_idx": false, "positional_embedding_type": "standard", "final_rms": false,
     "d_vocab_out": -1, "parallel_attn_mlp": false, "n_key_value_heads": null, "gated_mlp": false, "dtype": "torch.float32"}
    """;

    [Fact]
    public void Parses_a_TransformerLens_config_and_defaults_d_vocab_out_to_d_vocab()
    {
        var c = ModelConfig.Parse("config.json", TransformerLensConfig);
        Assert.Equal(new ModelConfig(16, 4, 4, 32, 2, 7, 11, 11, false), c);
        Assert.Equal(c, ModelConfig.Parse("again.json", c.ToJson()));
    }

    [Theory]
    [InlineData("normalization_type", "\"LNPost\"")]
    [InlineData("act_fn", "\"solu_ln\"")]
    [InlineData("positional_embedding_type", "\"alibi\"")]
    [InlineData("use_qk_norm", "true")]
    [InlineData("output_logits_soft_cap", "30.0")]
    [InlineData("attention_dir", "\"bidirectional\"")]
    public void Refuses_unsupported_architecture_naming_the_field(string field, string value)
    {
        var o = JsonNode.Parse(TransformerLensConfig)!.AsObject();
        o[field] = JsonNode.Parse(value);
        var e = Assert.Throws<UnsupportedConfigException>(() => ModelConfig.Parse("m/config.json", o.ToJsonString()));
        Assert.Contains("m/config.json", e.Message);
        Assert.Contains($"'{field}'", e.Message);
        Assert.Equal(ExitCodes.Unsupported, e.ExitCode);
    }

    [Theory]
    [InlineData("d_model", "null", "missing")]
    [InlineData("d_model", "\"16\"", "expected an integer")]
    [InlineData("n_heads", "0", "positive")]
    [InlineData("d_head", "2.5", "expected an integer")]
    public void Refuses_missing_or_malformed_sizes(string field, string value, string expected)
    {
        var o = JsonNode.Parse(TransformerLensConfig)!.AsObject();
        if (value == "null") o.Remove(field); else o[field] = JsonNode.Parse(value);
        var e = Assert.Throws<InvalidInputException>(() => ModelConfig.Parse("config.json", o.ToJsonString()));
        Assert.Contains($"'{field}'", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Attention_only_config_needs_no_act_fn_or_d_mlp()
    {
        var c = ModelConfig.Parse("c.json", """{"d_model":8,"n_heads":2,"d_head":4,"n_layers":1,"n_ctx":3,"d_vocab":5,"attn_only":true,"act_fn":null}""");
        Assert.True(c.AttnOnly);
        Assert.DoesNotContain(c.ParameterShapes(), p => p.Name.Contains("mlp"));
        Assert.Equal(["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"], c.SiteNames());
    }

    static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "verifier-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    static readonly ModelConfig Tiny = ModelConfig.Create(8, 2, 4, 16, 2, 5, 7, 6, attnOnly: false);

    [Fact]
    public void Weights_round_trip_through_a_model_directory()
    {
        string dir = TempDir();
        try
        {
            var w = ModelWeights.Random(Tiny, seed: 3);
            w.SaveInto(dir);
            var back = ModelWeights.Load(dir);
            Assert.Equal(Tiny, back.Config);
            foreach (var (name, t) in w.Tensors) Assert.Equal(t.Data, back[name].Data);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_TransformerLens_state_dict_with_mask_and_IGNORE_buffers_loads()
    {
        string dir = TempDir();
        try
        {
            var w = ModelWeights.Random(Tiny, seed: 4, dtype: "F32");
            var tensors = w.Tensors.Values.ToList();
            File.WriteAllText(Path.Combine(dir, "config.json"), Tiny.ToJson());
            var bytes = SafetensorsFile.Serialize(tensors);
            // Add blocks.{l}.attn.mask (BOOL [n_ctx, n_ctx]) and IGNORE (F32 scalar) as TransformerLens's state_dict has.
            var file = SafetensorsFile.Parse("x", bytes);
            var extra = new List<(string Name, string Dtype, long[] Shape, byte[] Data)>();
            for (int l = 0; l < Tiny.NLayers; l++)
            {
                extra.Add(($"blocks.{l}.attn.mask", "BOOL", [Tiny.NCtx, Tiny.NCtx], new byte[Tiny.NCtx * Tiny.NCtx]));
                extra.Add(($"blocks.{l}.attn.IGNORE", "F32", [], BitConverter.GetBytes(-1e5f)));
            }
            File.WriteAllBytes(Path.Combine(dir, ModelWeights.WeightsFileName), RawWriter.Write(tensors, extra));
            var back = ModelWeights.Load(dir);
            Assert.Equal(w["blocks.1.mlp.W_in"].Data.Select(x => (double)(float)x), back["blocks.1.mlp.W_in"].Data);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Missing_extra_misshaped_and_non_finite_tensors_are_named()
    {
        var w = ModelWeights.Random(Tiny, seed: 5);
        var d = w.Tensors.ToDictionary();

        var missing = new Dictionary<string, NamedTensor>(d); missing.Remove("blocks.1.attn.W_K");
        Assert.Contains("missing 'blocks.1.attn.W_K' [2, 8, 4]", Assert.Throws<InvalidInputException>(() => new ModelWeights(Tiny, missing, "f")).Message);

        // A missing bias reads as zeros, as TransformerLens initialises it (LLaMA-style state dicts have none).
        var noBias = new Dictionary<string, NamedTensor>(d); noBias.Remove("blocks.1.attn.b_K");
        var zeroed = new ModelWeights(Tiny, noBias, "f");
        Assert.Equal(new double[8], zeroed["blocks.1.attn.b_K"].Data);
        Assert.Equal(["blocks.1.attn.b_K"], zeroed.ZeroFilledBiases);

        var extra = new Dictionary<string, NamedTensor>(d) { ["blocks.0.ln1.w"] = new("blocks.0.ln1.w", [8], new double[8]) };
        Assert.Contains("unexpected 'blocks.0.ln1.w'", Assert.Throws<InvalidInputException>(() => new ModelWeights(Tiny, extra, "f")).Message);

        var shaped = new Dictionary<string, NamedTensor>(d) { ["unembed.W_U"] = new("unembed.W_U", [6, 8], new double[48]) };
        var e = Assert.Throws<InvalidInputException>(() => new ModelWeights(Tiny, shaped, "f"));
        Assert.Contains("'unembed.W_U'", e.Message);
        Assert.Contains("shape [6, 8], expected [8, 6]", e.Message);

        var nan = d["embed.W_E"].Data.ToArray(); nan[5] = double.NaN;
        var bad = new Dictionary<string, NamedTensor>(d) { ["embed.W_E"] = d["embed.W_E"] with { Data = nan } };
        e = Assert.Throws<InvalidInputException>(() => new ModelWeights(Tiny, bad, "f"));
        Assert.Contains("'embed.W_E'", e.Message);
        Assert.Contains("element 5 is NaN", e.Message);
    }
}

/// <summary>Writes safetensors with arbitrary extra raw entries (for buffers of non-float dtypes).</summary>
static class RawWriter
{
    public static byte[] Write(IEnumerable<NamedTensor> tensors, IEnumerable<(string Name, string Dtype, long[] Shape, byte[] Data)> extra)
    {
        var entries = tensors.Select(t => (t.Name, t.Dtype, Shape: t.Shape.Select(s => (long)s).ToArray(),
            Data: t.Data.SelectMany(v => t.Dtype == "F32" ? BitConverter.GetBytes((float)v) : BitConverter.GetBytes(v)).ToArray()))
            .Concat(extra).OrderBy(e => e.Item1, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        long off = 0;
        foreach (var e in entries)
        {
            header[e.Item1] = new JsonObject
            {
                ["dtype"] = e.Item2,
                ["shape"] = new JsonArray(e.Item3.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(off, off + e.Item4.Length),
            };
            off += e.Item4.Length;
        }
        var h = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        var result = new List<byte>(BitConverter.GetBytes((ulong)h.Length));
        result.AddRange(h);
        foreach (var e in entries) result.AddRange(e.Item4);
        return result.ToArray();
    }
}
