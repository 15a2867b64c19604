// Window geometry of a convolution kernel: compile-time constants when the
// host compiled a specialised variant (-DPASK_FIXED_*), else the launch's
// parameters p. Shared by conv_igemm.cu and conv_depthwise.cu.

#ifdef PASK_FIXED_KH
#define PASK_KH PASK_FIXED_KH
#else
#define PASK_KH ((int)p.kh)
#endif
#ifdef PASK_FIXED_KW
#define PASK_KW PASK_FIXED_KW
#else
#define PASK_KW ((int)p.kw)
#endif
#ifdef PASK_FIXED_STRIDE
#define PASK_SH PASK_FIXED_STRIDE
#define PASK_SW PASK_FIXED_STRIDE
#else
#define PASK_SH ((int)p.stride_h)
#define PASK_SW ((int)p.stride_w)
#endif
#ifdef PASK_FIXED_PAD
#define PASK_PT PASK_FIXED_PAD
#define PASK_PL PASK_FIXED_PAD
#else
#define PASK_PT ((int)p.pad_top)
#define PASK_PL ((int)p.pad_left)
#endif
#ifdef PASK_FIXED_DIL
#define PASK_DH PASK_FIXED_DIL
#define PASK_DW PASK_FIXED_DIL
#else
#define PASK_DH ((int)p.dil_h)
#define PASK_DW ((int)p.dil_w)
#endif
