package ir

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	// e.w is bf16[128, 64]; e.x is f32[T, 64].
	q := func(format, part string, group int64) func(e *opEnv) *Value {
		return func(e *opEnv) *Value {
			return e.b.Op(OpQuantize, vals(e.w), Str("format", format), Int("group", group), Str("part", part))
		}
	}
	mq := func(format string, group int64) func(e *opEnv) *Value {
		return func(e *opEnv) *Value {
			codes := q(format, "codes", group)(e)
			scales := q(format, "scales", group)(e)
			return e.b.Op(OpMatMulQ, vals(e.x, codes, scales), Str("format", format), Int("group", group))
		}
	}
	familyInferenceCases = append(familyInferenceCases,
		c{"quantize/int8 codes", q("int8", "codes", 32), "i8[128, 64]", ""},
		c{"quantize/int4 codes", q("int4", "codes", 32), "u8[128, 32]", ""},
		c{"quantize/fp8 codes", q("fp8", "codes", 64), "f8e4m3[128, 64]", ""},
		c{"quantize/scales", q("int4", "scales", 32), "f32[128, 2]", ""},
		c{"quantize/group", q("int8", "codes", 48), "", "group 48 must be a positive multiple of 32"},
		c{"quantize/group divides K", q("int8", "codes", 128), "", "divides K = 64"},
		c{"quantize/format", q("int3", "codes", 32), "", "format must be int8, int4 or fp8"},
		c{"quantize/part", q("int8", "bias", 32), "", "part must be codes or scales"},
		c{"matmul_q/int8", mq("int8", 32), "f32[T, 128]", ""},
		c{"matmul_q/int4", mq("int4", 64), "f32[T, 128]", ""},
		c{"matmul_q/fp8", mq("fp8", 32), "f32[T, 128]", ""},
		c{"matmul_q/format mismatch", func(e *opEnv) *Value {
			codes := q("int8", "codes", 32)(e)
			scales := q("int8", "scales", 32)(e)
			return e.b.Op(OpMatMulQ, vals(e.x, codes, scales), Str("format", "fp8"), Int("group", 32))
		}, "", "fp8 with K = 64 needs f8e4m3[128, 64]"},
		c{"matmul_q/scales", func(e *opEnv) *Value {
			codes := q("int8", "codes", 32)(e)
			scales := q("int8", "scales", 64)(e)
			return e.b.Op(OpMatMulQ, vals(e.x, codes, scales), Str("format", "int8"), Int("group", 32))
		}, "", "scales must be f32[128, 2]"},
	)
}
