using System.Text;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Core.Tests;

/// <summary>Issue 10: every config field known, strict JSON, escaped display, bounded dataset lines, exclusive outputs.</summary>
public class ConfigFieldTests
{
    const string Base = """
    {"n_layers": 1, "d_model": 8, "n_ctx": 4, "d_head": 4, "n_heads": 2, "d_mlp": 16, "act_fn": "relu", "d_vocab": 5,
     "normalization_type": null, "positional_embedding_type": "standard"}
    """;

    static string With(string field, string value)
    {
        var o = JsonNode.Parse(Base)!.AsObject();
        o[field] = JsonNode.Parse(value);
        return o.ToJsonString();
    }

    [Theory]
    [InlineData("output_logits_soft_cap", "30.0")]
    [InlineData("output_logits_soft_cap", "0.0")]
    [InlineData("attn_scores_soft_cap", "50.0")]
    [InlineData("post_embedding_ln", "true")]
    [InlineData("use_normalization_before_and_after", "true")]
    [InlineData("use_qk_norm", "true")]
    [InlineData("load_in_4bit", "true")]
    [InlineData("tie_word_embeddings", "true")]
    [InlineData("num_experts", "4")]
    [InlineData("attn_scale", "-1.0")]
    [InlineData("attention_dir", "\"bidirectional\"")]
    [InlineData("positional_embedding_type", "\"shortformer\"")]
    [InlineData("positional_embedding_type", "\"alibi\"")]
    [InlineData("normalization_type", "\"LNPost\"")]
    [InlineData("act_fn", "\"solu_ln\"")]
    [InlineData("act_fn", "\"relu2\"")]
    [InlineData("use_NTK_by_parts_rope", "true")]
    public void A_field_that_changes_the_function_is_refused_by_name_and_value(string field, string value)
    {
        var e = Assert.Throws<UnsupportedConfigException>(() => ModelConfig.Parse("m/config.json", With(field, value)));
        Assert.Equal(ExitCodes.Unsupported, e.ExitCode);
        Assert.StartsWith($"m/config.json: field '{field}': {JsonNode.Parse(value)!.ToJsonString()} ", e.Message);
    }

    [Theory]
    [InlineData("foo", "1")]
    [InlineData("use_fancy_attention", "false")]
    [InlineData("\u001b[32maccepted", "0")]
    public void An_unknown_field_is_refused_by_name(string field, string value)
    {
        var e = Assert.Throws<UnsupportedConfigException>(() => ModelConfig.Parse("m/config.json", With(field, value)));
        Assert.Contains($"field '{Display.Escape(field)}': unknown field", e.Message);
        Assert.DoesNotContain('\u001b', e.Message);
    }

    [Theory]
    [InlineData("output_logits_soft_cap", "-1.0")]
    [InlineData("attn_scores_soft_cap", "-1.0")]
    [InlineData("scale_attn_by_inverse_layer_idx", "false")]
    [InlineData("attn_scale", "2.0")]
    [InlineData("use_attn_scale", "true")]
    [InlineData("final_rms", "false")]
    [InlineData("num_experts", "null")]
    [InlineData("experts_per_token", "2")]
    [InlineData("n_key_value_heads", "null")]
    [InlineData("post_embedding_ln", "false")]
    [InlineData("use_normalization_before_and_after", "false")]
    [InlineData("use_qk_norm", "false")]
    [InlineData("load_in_4bit", "false")]
    [InlineData("tie_word_embeddings", "false")]
    [InlineData("d_vocab_out", "-1")]
    [InlineData("eps", "1e-5")]
    [InlineData("window_size", "256")]
    [InlineData("attn_types", "[\"global\", \"local\"]")]
    [InlineData("rotary_dim", "64")]
    [InlineData("rotary_base", "10000")]
    [InlineData("rotary_adjacent_pairs", "true")]
    [InlineData("final_rms", "true")]
    [InlineData("relative_attention_max_distance", "128")]
    [InlineData("relative_attention_num_buckets", "32")]
    [InlineData("decoder_start_token_id", "0")]
    [InlineData("model_name", "\"gpt2\"")]
    [InlineData("device", "\"cuda\"")]
    [InlineData("n_devices", "2")]
    [InlineData("seed", "42")]
    [InlineData("dtype", "\"torch.bfloat16\"")]
    [InlineData("tokenizer_name", "\"gpt2\"")]
    [InlineData("original_architecture", "\"GPT2LMHeadModel\"")]
    [InlineData("from_checkpoint", "true")]
    [InlineData("checkpoint_index", "3")]
    [InlineData("checkpoint_label_type", "\"step\"")]
    [InlineData("checkpoint_value", "1000")]
    [InlineData("init_mode", "\"kaiming_normal\"")]
    [InlineData("initializer_range", "0.02")]
    [InlineData("init_weights", "false")]
    [InlineData("n_params", "1234")]
    [InlineData("default_prepend_bos", "false")]
    [InlineData("tokenizer_prepends_bos", "true")]
    [InlineData("use_hook_tokens", "true")]
    [InlineData("use_split_qkv_input", "true")]
    [InlineData("use_attn_result", "true")]
    [InlineData("use_attn_in", "true")]
    [InlineData("use_hook_mlp_in", "true")]
    [InlineData("ungroup_grouped_query_attention", "true")]
    [InlineData("trust_remote_code", "true")]
    [InlineData("use_local_attn", "false")]
    [InlineData("attention_dir", "\"causal\"")]
    public void A_known_inert_field_or_the_implemented_value_is_accepted(string field, string value)
    {
        var c = ModelConfig.Parse("m/config.json", With(field, value));
        Assert.Equal(ModelConfig.Parse("m/config.json", Base), c);
    }

    [Fact]
    public void Every_field_list_is_disjoint_and_the_configs_the_project_writes_still_load()
    {
        Assert.Empty(ModelConfig.InertFields.Intersect(ModelConfig.FunctionalFields));
        Assert.Empty(ModelConfig.ConditionallyInertFields.Keys.Intersect(ModelConfig.FunctionalFields));
        foreach (var c in new[] { ModelConfig.Create(8, 2, 4, 16, 2, 5, 7, 6, attnOnly: false), ModelConfig.Create(8, 2, 4, 0, 1, 3, 5, 5, attnOnly: true) })
            Assert.Equal(c, ModelConfig.Parse("again.json", c.ToJson()));
    }
}

public class StrictJsonTests
{
    [Theory]
    [InlineData("{\"d_model\": 8, \"d_model\": 16}", "duplicate key 'd_model'", "line 1, byte 15")]
    [InlineData("{\"a\": {\"b\": 1,\n \"b\": 2}}", "duplicate key 'b'", "line 2, byte 16")]
    [InlineData("[{\"x\": 1}, {\"y\": [{\"z\": 0, \"z\": 1}]}]", "duplicate key 'z'", "line 1")]
    [InlineData("{\"a\": 1} {\"a\": 2}", "content after the end", "line 1, byte 9")]
    [InlineData("{\"a\": 1}\n\nx", "content after the end", "line 3, byte 10")]
    [InlineData("{\"a\": 1}\u0000", "content after the end", "byte 8")]
    [InlineData(" \n", "empty", "line 1")]
    public void Duplicate_keys_and_trailing_content_are_refused_with_file_and_position(string json, string problem, string where)
    {
        var e = Assert.Throws<InvalidInputException>(() => StrictJson.Parse("f.json", json));
        Assert.Contains(problem, e.Message);
        Assert.Contains(where, e.Message);
        Assert.StartsWith("f.json: ", e.Message);
    }

    [Fact]
    public void Same_names_in_different_objects_are_fine()
    {
        var n = StrictJson.Parse("f.json", "{\"a\": {\"x\": 1}, \"b\": {\"x\": 2}, \"c\": [{\"x\": 3}, {\"x\": 4}]}  \n");
        Assert.Equal(4, n!["c"]![1]!["x"]!.GetValue<int>());
    }

    [Fact]
    public void Model_and_crosscoder_configs_refuse_duplicate_keys()
    {
        var e = Assert.Throws<InvalidInputException>(() => ModelConfig.Parse("m/config.json",
            """{"n_layers": 1, "d_model": 8, "n_ctx": 4, "d_head": 4, "n_heads": 2, "d_mlp": 16, "act_fn": "relu", "d_vocab": 5, "output_logits_soft_cap": 30.0, "output_logits_soft_cap": -1.0}"""));
        Assert.Contains("duplicate key 'output_logits_soft_cap'", e.Message);
        var c = Assert.Throws<InvalidInputException>(() => CrosscoderConfig.Parse("cc/config.json", "{\"width\": 4, \"width\": 8}"));
        Assert.Contains("cc/config.json", c.Message);
        Assert.Contains("duplicate key 'width'", c.Message);
    }
}

public class DisplayTests
{
    [Theory]
    [InlineData("plain ✓ text / path", "plain ✓ text / path")]
    [InlineData("\u001b[2K\raccepted", "\\u001b[2K\\u000daccepted")]
    [InlineData("a\nb\tc", "a\\u000ab\\u0009c")]
    [InlineData("x\u009by", "x\\u009by")]
    [InlineData("x\u007fy", "x\\u007fy")]
    [InlineData("\u202edetcepta", "\\u202edetcepta")]
    [InlineData("\u2066a\u2069", "\\u2066a\\u2069")]
    [InlineData("\u200f", "\\u200f")]
    public void Controls_and_bidi_overrides_are_escaped(string s, string shown) => Assert.Equal(shown, Display.Escape(s));
}

public class DatasetInputTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-io-{Guid.NewGuid():N}");
    public DatasetInputTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    static readonly ModelConfig C = ModelConfig.Create(8, 2, 4, 16, 1, 4, 10, 10, attnOnly: false);

    string Write(string text) { string p = Path.Combine(_dir, $"{Guid.NewGuid():N}.jsonl"); File.WriteAllText(p, text); return p; }

    [Fact]
    public void A_duplicate_key_in_a_line_is_refused_with_the_line()
    {
        string p = Write("{\"tokens\":[1,2],\"labels\":[-1,2]}\n{\"tokens\":[1,2],\"labels\":[-1,2],\"labels\":[-1,-1]}\n");
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, C));
        Assert.Contains($"{p}: line 2, byte 32: duplicate key 'labels'", e.Message);
    }

    [Fact]
    public void Content_after_the_object_on_a_line_is_refused()
    {
        string p = Write("{\"tokens\":[1,2],\"labels\":[-1,2]} {\"tokens\":[3],\"labels\":[3]}\n");
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, C));
        Assert.Contains("line 1", e.Message);
        Assert.Contains("content after the end", e.Message);
    }

    [Theory]
    [InlineData("99999999999", "'tokens'[1] = 99999999999 is out of range (must be in [0, 10) (d_vocab))")]
    [InlineData("-99999999999", "'tokens'[1] = -99999999999 is out of range (must be in [0, 10) (d_vocab))")]
    [InlineData("1.5", "'tokens'[1] must be an integer, found 1.5")]
    [InlineData("1e3", "'tokens'[1] must be an integer, found 1e3")]
    public void A_huge_token_is_out_of_range_not_a_non_integer(string token, string message)
    {
        string p = Write($"{{\"tokens\":[1,{token}],\"labels\":[-1,2]}}\n");
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, C));
        Assert.Contains($"line 1: {message}", e.Message);
    }

    [Fact]
    public void An_overlong_line_is_refused_by_number_without_reading_it_whole()
    {
        int max = TokenDataset.MaxLineBytes(C.NCtx);
        Assert.Equal(65536 + 32 * 4, max);
        string p = Path.Combine(_dir, "long.jsonl");
        using (var w = new StreamWriter(p, false, new UTF8Encoding(false)))
        {
            w.Write("{\"tokens\":[1],\"labels\":[1]}\n{\"tokens\":[1],\"labels\":[1]}\n{\"tokens\":[");
            for (int i = 0; i < 4_000_000; i++) w.Write("1,");   // 8 MB on one line
            w.Write("1],\"labels\":[1]}\n");
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, C));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains($"{p}: line 3: longer than {max} bytes", e.Message);
        Assert.True(allocated < 2_000_000, $"allocated {allocated} bytes to refuse the line");
    }

    [Fact]
    public void Lines_within_the_limit_with_crlf_and_bom_still_load()
    {
        string p = Path.Combine(_dir, "ok.jsonl");
        File.WriteAllBytes(p, [0xEF, 0xBB, 0xBF, .. "{\"tokens\":[1,2],\"labels\":[-1,2]}\r\n\r\n{ \"tokens\" : [3] , \"labels\" : [3] }"u8]);
        var d = TokenDataset.Load(p, C);
        Assert.Equal(2, d.Count);
        Assert.Equal(new[] { 3 }, d.Sequences[1].Tokens);
    }

    [Fact]
    public void Dataset_messages_escape_control_characters()
    {
        string p = Write("{\"tokens\":[1],\"labels\":[1],\"\\u001b[2Jok\":1}\n");
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, C));
        Assert.Contains("unknown field '\\u001b[2Jok'", e.Message);
        Assert.DoesNotContain('\u001b', e.Message);
    }
}

public class OutputTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-out-{Guid.NewGuid():N}");
    public OutputTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string n) => Path.Combine(_dir, n);

    [Fact]
    public void Racing_exclusive_file_writes_to_one_path_exactly_one_wins()
    {
        for (int round = 0; round < 20; round++)
        {
            string target = P($"race-{round}.json");
            int wins = 0, refused = 0;
            using var start = new Barrier(8);
            var threads = Enumerable.Range(0, 8).Select(i => new Thread(() =>
            {
                start.SignalAndWait();
                try { AtomicOutput.WriteAllText(target, $"writer {i}"); Interlocked.Increment(ref wins); }
                catch (OutputExistsException) { Interlocked.Increment(ref refused); }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.Equal(1, wins);
            Assert.Equal(7, refused);
            Assert.StartsWith("writer ", File.ReadAllText(target));
        }
        Assert.Empty(Directory.EnumerateFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void Racing_exclusive_directory_writes_to_one_path_exactly_one_wins()
    {
        for (int round = 0; round < 10; round++)
        {
            string target = P($"race-dir-{round}");
            int wins = 0, refused = 0;
            using var start = new Barrier(6);
            var threads = Enumerable.Range(0, 6).Select(i => new Thread(() =>
            {
                try
                {
                    AtomicOutput.WriteDirectory(target, force: false, tmp =>
                    {
                        File.WriteAllText(Path.Combine(tmp, "who"), $"{i}");
                        start.SignalAndWait();
                    });
                    Interlocked.Increment(ref wins);
                }
                catch (OutputExistsException) { Interlocked.Increment(ref refused); }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.Equal(1, wins);
            Assert.Equal(5, refused);
            Assert.Single(Directory.EnumerateFiles(target));
        }
    }

    [Fact]
    public void Publish_without_overwrite_refuses_a_target_that_appeared_meanwhile()
    {
        File.WriteAllText(P("t.tmp"), "new");
        File.WriteAllText(P("t"), "theirs");
        Assert.Throws<OutputExistsException>(() => AtomicOutput.Publish(P("t.tmp"), P("t"), overwrite: false));
        Assert.Equal("theirs", File.ReadAllText(P("t")));
        AtomicOutput.Publish(P("t.tmp"), P("t"), overwrite: true);
        Assert.Equal("new", File.ReadAllText(P("t")));
    }

    [Fact]
    public void The_guard_refuses_inputs_the_store_and_non_regular_files_even_through_symlinks()
    {
        File.WriteAllText(P("data.jsonl"), "x");
        Directory.CreateDirectory(P("model"));
        File.WriteAllText(P("model/config.json"), "{}");
        File.CreateSymbolicLink(P("link.json"), P("data.jsonl"));
        Directory.CreateDirectory(P("sub"));
        Directory.CreateSymbolicLink(P("alias"), P("sub"));
        string[] inputs = [P("model"), P("data.jsonl")];

        Assert.Contains("is an input", Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("data.jsonl"), false, inputs)).Message);
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("link.json"), false, inputs));
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("sub/../data.jsonl"), false, inputs));
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("v.db"), false, inputs, store: P("alias/../v.db")));
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("alias/v.db-wal"), false, inputs, store: P("sub/v.db")));
        // A directory output that contains an input would delete it when replaced.
        Assert.Contains("contains", Assert.Throws<UsageException>(() => OutputGuard.Check("--out", _dir, true, inputs)).Message);
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("model"), true, inputs));
        var dev = Assert.Throws<UsageException>(() => OutputGuard.Check("--out", "/dev/null", false, inputs));
        Assert.Contains("character device", dev.Message);
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("sub"), false, inputs));
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("data.jsonl"), true, []));

        OutputGuard.Check("--out", P("new.json"), false, inputs, store: P("v.db"));
        OutputGuard.Check("--out", P("model/transcript.json"), false, inputs);
        Assert.Throws<UsageException>(() => OutputGuard.Check("--out", P("model/config.json"), false, inputs));
        OutputGuard.Check("--out", P("alias/new-dir"), true, inputs);
        Assert.Equal(P("sub/x"), OutputGuard.Resolve(P("alias/x")));
    }
}
