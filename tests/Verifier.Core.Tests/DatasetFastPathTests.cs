using System.Text;
using FsCheck;
using FsCheck.Xunit;
using Verifier.Core;

namespace Verifier.Core.Tests;

/// <summary>The dataset reader's fast path for the canonical line form and its parallel batches read exactly what the
/// strict line-by-line parser reads.</summary>
public class DatasetFastPathTests
{
    static readonly string[] Pieces = ["0", "7", "-1", "-0", "00", "012", "2147483647", "123456789", "1234567890", " 1", "1 ", "+1", "1.0", "1e2", "", "-"];

    /// <summary>Canonical lines and their near misses (spaces, signs, leading zeros, long numbers, empty arrays, other
    /// keys, missing brackets): whatever the fast path accepts, the strict parser reads as the same sequence.</summary>
    [Property(MaxTest = 2000)]
    public bool The_fast_path_accepts_only_lines_the_strict_parser_reads_the_same(ulong seed)
    {
        var r = new Rng(seed);
        string List(int n) => string.Join(",", Enumerable.Range(0, n).Select(_ => r.NextInt(3) == 0 ? Pieces[r.NextInt(Pieces.Length)] : r.NextInt(64).ToString()));
        int n = r.NextInt(5);
        string line = r.NextInt(4) switch
        {
            0 => $"{{\"tokens\":[{List(n)}],\"labels\":[{List(n)}]}}",
            1 => $"{{\"tokens\":[{List(n)}],\"labels\":[{List(r.NextInt(5))}]}}",
            2 => $"{{\"labels\":[{List(n)}],\"tokens\":[{List(n)}]}}",
            _ => $"{{\"tokens\":[{List(n)}],\"labels\":[{List(n)}]}}"[..^r.NextInt(3)] + (r.NextInt(2) == 0 ? "" : " "),
        };
        var bytes = Encoding.UTF8.GetBytes(line);
        var fast = TokenDataset.TryParseCanonical(bytes);
        if (fast is null) return true;
        Sequence strict;
        try { strict = TokenDataset.ParseStrict(bytes); }
        catch (InvalidInputException) { return false; }
        return fast.Tokens.SequenceEqual(strict.Tokens) && fast.Labels.SequenceEqual(strict.Labels);
    }

    /// <summary>A file of many batches (canonical and spaced lines, CRLF, blank lines) loads to the same sequences in
    /// the same order as written, and the first bad line is the one reported, by number.</summary>
    [Fact]
    public void Many_batches_load_in_order_and_the_first_bad_line_is_reported()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"verifier-ds-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var r = new Rng(5);
            var seqs = Enumerable.Range(0, 30000).Select(_ =>
            {
                int T = 1 + r.NextInt(5);
                return new Sequence(Enumerable.Range(0, T).Select(_ => r.NextInt(64)).ToArray(), Enumerable.Range(0, T).Select(_ => r.NextInt(3) - 1).ToArray());
            }).ToArray();
            var sb = new StringBuilder();
            for (int i = 0; i < seqs.Length; i++)
            {
                var s = seqs[i];
                sb.Append(i % 7 == 0 ? $"{{ \"labels\" : [{string.Join(", ", s.Labels)}], \"tokens\": [{string.Join(",", s.Tokens)}] }}" : $"{{\"tokens\":[{string.Join(",", s.Tokens)}],\"labels\":[{string.Join(",", s.Labels)}]}}");
                sb.Append(i % 11 == 0 ? "\r\n" : "\n");
                if (i % 1000 == 0) sb.Append('\n');
            }
            string p = Path.Combine(dir, "d.jsonl");
            File.WriteAllText(p, sb.ToString());
            var d = TokenDataset.Load(p);
            Assert.Equal(seqs.Length, d.Count);
            for (int i = 0; i < seqs.Length; i++)
            {
                Assert.Equal(seqs[i].Tokens, d.Sequences[i].Tokens);
                Assert.Equal(seqs[i].Labels, d.Sequences[i].Labels);
            }
            // Two bad lines far apart (different batches): the earlier one is reported.
            var lines = File.ReadAllLines(p).ToList();
            lines[20000] = "{\"tokens\":[1],\"labels\":[1,2]}";
            lines[25000] = "{\"tokens\":[1]}";
            File.WriteAllLines(p, lines);
            var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p));
            Assert.Contains("line 20001", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
