using System.Buffers.Binary;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Core;

namespace Verifier.Core.Tests;

public class SafetensorsTests
{
    const string F = "weights.safetensors";

    /// <summary>A file with the given JSON header (unpadded) and <paramref name="data"/> bytes of data.</summary>
    static byte[] Raw(string header, int data)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var b = new byte[8 + h.Length + data];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        return b;
    }

    static InvalidInputException Fault(byte[] bytes) => Assert.Throws<InvalidInputException>(() => SafetensorsFile.Parse(F, bytes));

    [Property(MaxTest = 200)]
    public bool Round_trip_preserves_names_shapes_and_values(NonEmptyArray<NormalFloat> values, bool f64, PositiveInt split)
    {
        var v = values.Get.Select(x => f64 ? x.Get : (double)(float)x.Get).ToArray();
        int cut = split.Get % v.Length;
        var tensors = new[]
        {
            new NamedTensor("b.second", [v.Length - cut], v[cut..], f64 ? "F64" : "F32"),
            new NamedTensor("a.first", [cut, 1], v[..cut], f64 ? "F64" : "F32"),
        };
        var file = SafetensorsFile.Parse(F, SafetensorsFile.Serialize(tensors));
        return tensors.All(t => file.Tensors[t.Name].Shape.SequenceEqual(t.Shape.Select(s => (long)s))
                                && file.ReadDoubles(t.Name).SequenceEqual(t.Data)
                                && file.Tensors[t.Name].Dtype == t.Dtype);
    }

    [Fact]
    public void Writer_pads_the_header_to_8_bytes_and_is_deterministic()
    {
        var t = new[] { new NamedTensor("x", [3], [1, 2, 3]) };
        var a = SafetensorsFile.Serialize(t);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(a) % 8);
        Assert.Equal(a, SafetensorsFile.Serialize(t));
    }

    [Fact]
    public void Reads_F16_and_BF16_and_metadata()
    {
        var b = Raw("""{"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"g":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}""", 6);
        int d = b.Length - 6;
        BinaryPrimitives.WriteHalfLittleEndian(b.AsSpan(d), (Half)1.5);
        BinaryPrimitives.WriteHalfLittleEndian(b.AsSpan(d + 2), (Half)(-2));
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(d + 4), 0x3FC0); // bfloat16 1.5
        var f = SafetensorsFile.Parse(F, b);
        Assert.Equal([1.5, -2.0], f.ReadDoubles("h"));
        Assert.Equal([1.5], f.ReadDoubles("g"));
        Assert.Equal("pt", f.Metadata["format"]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void Refuses_a_file_shorter_than_the_length_prefix(int n)
    {
        var e = Fault(new byte[n]);
        Assert.Contains(F, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Refuses_a_huge_header_length()
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(b, ulong.MaxValue - 3);
        Assert.Contains("exceeds", Fault(b).Message);
    }

    [Fact]
    public void Refuses_a_header_that_runs_past_the_end()
    {
        var b = Raw("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4);
        Assert.Contains("truncated", Fault(b[..20]).Message);
    }

    [Fact]
    public void Refuses_truncated_data_naming_the_tensor()
    {
        var full = SafetensorsFile.Serialize([new NamedTensor("blocks.0.attn.W_Q", [4], [1, 2, 3, 4])]);
        var e = Fault(full[..^3]);
        Assert.Contains("'blocks.0.attn.W_Q'", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Theory]
    [InlineData("""{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", 4, "shape [2] × F32")]
    [InlineData("""{"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}""", 4, "unknown dtype 'Q4'")]
    [InlineData("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", 4, "end before they begin")]
    [InlineData("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, "overlap")]
    [InlineData("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "gap")]
    [InlineData("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 12, "follow the last tensor")]
    [InlineData("""{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "non-negative")]
    [InlineData("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}""", 4, "unknown header field 'extra'")]
    [InlineData("""{"x":{"shape":[1],"data_offsets":[0,4]}}""", 4, "missing dtype")]
    [InlineData("""{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 4, "2 entries")]
    [InlineData("""{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}""", 4, "too large")]
    [InlineData("""{"x":""", 4, "not valid JSON")]
    [InlineData("""[1,2]""", 0, "JSON object")]
    public void Refuses_malformed_headers_with_the_file_and_tensor_named(string header, int data, string expected)
    {
        var e = Fault(Raw(header, data));
        Assert.StartsWith(F + ":", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Property(MaxTest = 300)]
    public bool Any_truncation_of_a_valid_file_is_refused_never_misread(PositiveInt cut)
    {
        var full = SafetensorsFile.Serialize([new NamedTensor("a", [3, 2], [1, 2, 3, 4, 5, 6]), new NamedTensor("b", [2], [7, 8], "F64")]);
        int keep = cut.Get % full.Length;
        try { SafetensorsFile.Parse(F, full[..keep]); return false; }
        catch (InvalidInputException e) { return e.Message.StartsWith(F); }
    }

    [Property(MaxTest = 300)]
    public bool Corrupting_one_header_byte_is_refused_or_reads_consistently(PositiveInt position, byte value)
    {
        // Whatever a flipped header byte does, the reader either refuses with an InvalidInputException or
        // yields tensors whose byte ranges are exactly the data section: never an exception of another kind.
        var full = SafetensorsFile.Serialize([new NamedTensor("a", [3, 2], [1, 2, 3, 4, 5, 6]), new NamedTensor("b", [2], [7, 8], "F64")]);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(full);
        var b = (byte[])full.Clone();
        b[position.Get % headerEnd] = value;
        try
        {
            var f = SafetensorsFile.Parse(F, b);
            long dataLength = b.Length - 8 - (long)BinaryPrimitives.ReadUInt64LittleEndian(b);
            return f.Tensors.Values.Sum(t => t.End - t.Begin) == dataLength;
        }
        catch (InvalidInputException) { return true; }
    }

    [Fact]
    public void Missing_file_is_named()
    {
        var e = Assert.Throws<InvalidInputException>(() => SafetensorsFile.Read("/nonexistent/model.safetensors"));
        Assert.Contains("/nonexistent/model.safetensors", e.Message);
    }
}
