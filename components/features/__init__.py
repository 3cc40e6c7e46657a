"""Point-in-time feature extraction with Apache Beam."""
