"""TensorRT's ONNX-parser operator support per TensorRT line, as data (from NVIDIA's onnx-tensorrt operator matrix).

Written from the public support matrix of TensorRT 10.0 and 10.15 (onnx-tensorrt docs/operators.md); the 11.x
line is taken as 10.15's set (it removes weakly-typed INT8/FP16 builder modes, not parser ops). Update the table
when a new matrix is published; the preflight treats any op not listed here as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass

# Ops the parser supports in every 10.x/11.x release we target (the standard-domain ops a vision/transformer
# model exports to). Deliberately a positive list: unknown op => preflight error, never a silent pass.
_COMMON = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BlackmanWindow
    Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
    GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If
    ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min
    Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
    SpaceToDepth Split Sqrt Squeeze STFT Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor
    """.split()
)
# Added to the parser after 10.0 (present in the 10.15 matrix).
_SINCE_10_15 = frozenset({"Attention", "RMSNormalization", "RotaryEmbedding", "DeformConv"})
# Never supported by the parser (kept explicit so messages can say so rather than "unknown op").
UNSUPPORTED = frozenset(
    """
    AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
    ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool
    MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
    OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
    SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
    StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
    """.split()
)


@dataclass(frozen=True)
class TrtTarget:
    """What a TensorRT line accepts: opset range, ops, and whether networks are strongly typed only."""

    name: str
    opset_min: int
    opset_max: int
    ops: frozenset[str]
    strongly_typed_only: bool
    implicit_int8_calibrator: bool


TARGETS: dict[str, TrtTarget] = {
    # 10.0-10.14: JetPack 6 ships 10.x. Opset range from the 10.0 matrix (9..20) - conservative for all 10.x.
    "10": TrtTarget("TensorRT 10.x", 9, 20, _COMMON, strongly_typed_only=False, implicit_int8_calibrator=True),
    "10.15": TrtTarget("TensorRT 10.15", 9, 24, _COMMON | _SINCE_10_15, False, True),
    # 11.x: strongly typed networks only; INT8 via explicit Q/DQ only; no IInt8Calibrator.
    "11": TrtTarget("TensorRT 11.x", 9, 24, _COMMON | _SINCE_10_15, True, implicit_int8_calibrator=False),
}


def target_for(version: str) -> TrtTarget:
    """Map a TensorRT version string ('10', '10.3.0', '11.0.1') to its support table; ValueError if unknown."""
    parts = version.strip().split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ValueError(f"not a TensorRT version: {version!r}") from None
    if major == 10:
        return TARGETS["10.15"] if minor >= 15 else TARGETS["10"]
    if major == 11:
        return TARGETS["11"]
    raise ValueError(f"TensorRT {version} is not supported by hipart-export (supported: 10.x, 11.x)")
