using System.Text;
using System.Buffers.Binary;
using System.Text.Json;

namespace Verifier.Core;

/// <summary>A tensor by name, shape and row-major float64 values: the currency between formats.
/// <see cref="Dtype"/> says how it is stored on disk ("F32" or "F64").</summary>
public sealed record NamedTensor(string Name, int[] Shape, double[] Data, string Dtype = "F32")
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>One entry of a safetensors header.</summary>
public sealed record TensorInfo(string Name, string Dtype, long[] Shape, long Begin, long End)
{
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
/// header length N, N bytes of JSON header, then the data. Every structural fault is refused with the
/// file and tensor named; see spec/safetensors.md for the exact rules.</summary>
public sealed class SafetensorsFile
{
    /// <summary>The reference implementation's limit on the header size.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    static readonly Dictionary<string, int> DtypeSizes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2,
        ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1,
        ["U64"] = 8, ["U32"] = 4, ["U16"] = 2, ["U8"] = 1, ["BOOL"] = 1,
        ["F8_E4M3"] = 1, ["F8_E5M2"] = 1,
    };

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    readonly byte[] _bytes;

    /// <summary>SHA-256 of exactly the bytes this file was parsed from.</summary>
    public string Sha256 => Hashing.Sha256(_bytes);
    readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, byte[] bytes, long dataStart, Dictionary<string, TensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; _bytes = bytes; _dataStart = dataStart; Tensors = tensors; Metadata = metadata;
    }

    public static SafetensorsFile Read(string path)
    {
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist");
        return Parse(path, File.ReadAllBytes(path));
    }

    public static SafetensorsFile Parse(string path, byte[] bytes)
    {
        if (bytes.Length < 8)
            throw new InvalidInputException(path, "header", $"truncated: the file has {bytes.Length} bytes, fewer than the 8-byte header length");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > MaxHeaderBytes)
            throw new InvalidInputException(path, "header", $"header length {n} exceeds the {MaxHeaderBytes}-byte limit (not a safetensors file, or corrupt)");
        if (8 + (long)n > bytes.Length)
            throw new InvalidInputException(path, "header", $"truncated: header length {n} runs past the end of the {bytes.Length}-byte file");
        long dataStart = 8 + (long)n;
        long dataLength = bytes.Length - dataStart;

        try { StrictUtf8.GetCharCount(bytes, 8, (int)n); }
        catch (DecoderFallbackException) { throw new InvalidInputException(path, "header", "is not valid UTF-8"); }
        // Strict: a tensor named twice in the header would otherwise be read as whichever entry came last.
        using var doc = StrictJson.ParseDocument($"{path}: header", bytes.AsMemory(8, (int)n));
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new InvalidInputException(path, "header", "must be a JSON object");

        var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object)
                    throw new InvalidInputException(path, "__metadata__", "must be an object of strings");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                        throw new InvalidInputException(path, $"__metadata__.{m.Name}", "must be a string");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var info = ParseEntry(path, prop);
            if (info.End > dataLength)
                throw new InvalidInputException(path, $"tensor '{info.Name}'", $"data_offsets [{info.Begin}, {info.End}] run past the end of the data ({dataLength} bytes): the file is truncated");
            tensors[info.Name] = info;
        }

        long expect = 0;
        foreach (var t in tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.Begin != expect)
                throw new InvalidInputException(path, $"tensor '{t.Name}'", t.Begin < expect
                    ? $"data_offsets [{t.Begin}, {t.End}] overlap the previous tensor (which ends at {expect})"
                    : $"data_offsets [{t.Begin}, {t.End}] leave a gap after byte {expect}");
            expect = t.End;
        }
        if (expect != dataLength)
            throw new InvalidInputException(path, "data", $"{dataLength - expect} bytes follow the last tensor's data (expected the data to end at byte {expect})");
        return new SafetensorsFile(path, bytes, dataStart, tensors, metadata);
    }

    static TensorInfo ParseEntry(string path, JsonProperty prop)
    {
        string where = $"tensor '{prop.Name}'";
        if (prop.Value.ValueKind != JsonValueKind.Object)
            throw new InvalidInputException(path, where, "header entry must be an object with dtype, shape and data_offsets");
        string? dtype = null; long[]? shape = null; long[]? offsets = null;
        foreach (var f in prop.Value.EnumerateObject())
        {
            switch (f.Name)
            {
                case "dtype":
                    if (f.Value.ValueKind != JsonValueKind.String) throw new InvalidInputException(path, where, "dtype must be a string");
                    dtype = f.Value.GetString()!;
                    if (!DtypeSizes.ContainsKey(dtype))
                        throw new InvalidInputException(path, where, $"unknown dtype '{dtype}' (expected one of {string.Join(", ", DtypeSizes.Keys)})");
                    break;
                case "shape": shape = ReadLongs(path, where, "shape", f.Value); break;
                case "data_offsets":
                    offsets = ReadLongs(path, where, "data_offsets", f.Value);
                    if (offsets.Length != 2) throw new InvalidInputException(path, where, $"data_offsets must have 2 entries, has {offsets.Length}");
                    break;
                default: throw new InvalidInputException(path, where, $"unknown header field '{f.Name}'");
            }
        }
        if (dtype is null) throw new InvalidInputException(path, where, "missing dtype");
        if (shape is null) throw new InvalidInputException(path, where, "missing shape");
        if (offsets is null) throw new InvalidInputException(path, where, "missing data_offsets");
        if (offsets[0] > offsets[1])
            throw new InvalidInputException(path, where, $"data_offsets [{offsets[0]}, {offsets[1]}] end before they begin");
        long count;
        try { count = checked(shape.Aggregate(1L, (a, b) => a * b) * DtypeSizes[dtype]); }
        catch (OverflowException) { throw new InvalidInputException(path, where, "shape is too large"); }
        if (count != offsets[1] - offsets[0])
            throw new InvalidInputException(path, where,
                $"shape [{string.Join(", ", shape)}] × {dtype} ({DtypeSizes[dtype]} bytes) = {count} bytes, but data_offsets [{offsets[0]}, {offsets[1]}] hold {offsets[1] - offsets[0]}");
        return new TensorInfo(prop.Name, dtype, shape, offsets[0], offsets[1]);
    }

    static long[] ReadLongs(string path, string where, string field, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new InvalidInputException(path, where, $"{field} must be an array of non-negative integers");
        var list = new List<long>();
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out long v) || v < 0)
                throw new InvalidInputException(path, where, $"{field} must be an array of non-negative integers, found {x.GetRawText()}");
            list.Add(v);
        }
        return list.ToArray();
    }

    /// <summary>The tensor's values as float64, whatever floating dtype it is stored in.</summary>
    public double[] ReadDoubles(string name)
    {
        if (!Tensors.TryGetValue(name, out var t)) throw new InvalidInputException(Path, $"tensor '{name}'", "missing");
        var span = _bytes.AsSpan((int)(_dataStart + t.Begin), (int)(t.End - t.Begin));
        var result = new double[(t.End - t.Begin) / DtypeSizes[t.Dtype]];
        switch (t.Dtype)
        {
            case "F64":
                for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadDoubleLittleEndian(span[(8 * i)..]);
                break;
            case "F32":
                for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(span[(4 * i)..]);
                break;
            case "F16":
                for (int i = 0; i < result.Length; i++) result[i] = (double)BinaryPrimitives.ReadHalfLittleEndian(span[(2 * i)..]);
                break;
            case "BF16":
                for (int i = 0; i < result.Length; i++)
                    result[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(span[(2 * i)..]) << 16);
                break;
            default:
                throw new InvalidInputException(Path, $"tensor '{name}'", $"dtype {t.Dtype} is not a floating-point type (expected F64, F32, F16 or BF16)");
        }
        return result;
    }

    /// <summary>Serialises tensors (in name order, contiguous, header padded to 8 bytes).</summary>
    public static byte[] Serialize(IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var header = new MemoryStream();
        long offset = 0;
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            foreach (var t in list)
            {
                if (t.Data.Length != t.Count)
                    throw new ArgumentException($"tensor '{t.Name}': shape {t.ShapeText} needs {t.Count} values, has {t.Data.Length}");
                int size = t.Dtype switch { "F32" => 4, "F64" => 8, _ => throw new ArgumentException($"tensor '{t.Name}': cannot write dtype {t.Dtype}") };
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.Dtype);
                w.WriteStartArray("shape");
                foreach (int s in t.Shape) w.WriteNumberValue(s);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += t.Count * size;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - header.Length % 8) % 8);
        for (int i = 0; i < pad; i++) header.WriteByte((byte)' ');
        var result = new byte[8 + header.Length + offset];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)header.Length);
        header.ToArray().CopyTo(result, 8);
        long pos = 8 + header.Length;
        foreach (var t in list)
        {
            var span = result.AsSpan((int)pos);
            if (t.Dtype == "F32")
                for (int i = 0; i < t.Data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(span[(4 * i)..], (float)t.Data[i]);
            else
                for (int i = 0; i < t.Data.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(span[(8 * i)..], t.Data[i]);
            pos += t.Count * (t.Dtype == "F32" ? 4 : 8);
        }
        return result;
    }

    /// <summary>Writes atomically, replacing <paramref name="path"/> unless <paramref name="overwrite"/> is false: the
    /// callers write into a directory they own (a temporary being built, or a test's); command outputs are published
    /// exclusively one level up (<see cref="AtomicOutput.WriteDirectory"/>).</summary>
    public static void Write(string path, IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = true) =>
        AtomicOutput.WriteAllBytes(path, Serialize(tensors, metadata), overwrite);
}
